//! The serde oracle: what the Rust runtime's serde_json accepts, refuses and writes.
//!
//! The struct declarations and their serde attributes are re-declared from the upstream sources
//! (types and attributes only; the `cfg_attr(feature = "serde", ...)` wrappers dropped):
//! - greenticai/greentic-types @ fedc2cabd0f20aaa540db51e04cbf503367b6b31 (v1.1.1):
//!   src/lib.rs (`validate_identifier`, `id_newtype!`, `InvocationDeadline`, `TenantCtx`),
//!   src/tenant.rs (`Impersonation`), src/session.rs (`SessionCursor`, `SessionData`,
//!   `ReplyScope` and `scope_hash`);
//! - greenticai/greentic-session @ 3fd21369e8816718fae9007f32245a2d753a7ecd (v0.5.0):
//!   src/mapping.rs (`telegram_update_to_session_key`, `webhook_to_session_key`) and
//!   src/backends/redis.rs (blobs are read with `serde_json::from_str` on a `String`).
//!
//! Protocol: one request per line on stdin, one answer per line on stdout, so a test can send
//! thousands of cases to one process. Every argument is lowercase hex of raw bytes, so any byte
//! string (not UTF-8, lone surrogates as WTF-8, newlines) travels intact.
//!   `session <hex>`           decode SessionData, answer `ok <hex of serde_json::to_string>`
//!   `scope <hex>`             decode ReplyScope, answer `ok <hex of to_string> <scope_hash>`
//!   `tg <hex> <hex> <hex>`    answer `ok <telegram_update_to_session_key(bot, chat, user)>`
//!   `wh <hex> <hex> <hex>`    answer `ok <webhook_to_session_key(source, subject, id_hint)>`
//! A refusal is `err <message>` (the message on one line).

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, BufRead, Write};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The greentic-types identifier rule, written anew: non-empty, ASCII alphanumerics, '.', '_', '-'.
fn check_identifier(value: &str, label: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err(format!("{label} must not be empty"));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-';
    if !value.chars().all(allowed) {
        return Err(format!("{label} must contain only ASCII letters, digits, '.', '-', or '_'"));
    }
    Ok(())
}

/// An identifier newtype with the upstream serde shape: `try_from = "String", into = "String"`.
macro_rules! identifier {
    ($name:ident) => {
        #[derive(Clone, Debug, PartialEq, Eq)]
        #[derive(Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(pub String);

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(value: String) -> Result<Self, String> {
                check_identifier(&value, stringify!($name)).map(|()| $name(value))
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }
    };
}

identifier!(EnvId);
identifier!(TenantId);
identifier!(TeamId);
identifier!(UserId);
identifier!(PackId);
identifier!(FlowId);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvocationDeadline {
    unix_millis: i128,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Impersonation {
    pub actor_id: UserId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantCtx {
    pub env: EnvId,
    pub tenant: TenantId,
    pub tenant_id: TenantId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub team: Option<TeamId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub team_id: Option<TeamId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<UserId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<UserId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flow_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub i18n_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deadline: Option<InvocationDeadline>,
    pub attempt: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub impersonation: Option<Impersonation>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionCursor {
    pub node_pointer: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbox_marker: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionData {
    pub tenant_ctx: TenantCtx,
    pub flow_id: FlowId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pack_id: Option<PackId>,
    pub cursor: SessionCursor,
    pub context_json: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyScope {
    pub conversation: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation: Option<String>,
}

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

impl ReplyScope {
    /// sha256 (lowercase hex) of the four fields joined by '\n', a missing field as "".
    fn scope_hash(&self) -> String {
        let parts = [
            self.conversation.as_str(),
            self.thread.as_deref().unwrap_or(""),
            self.reply_to.as_deref().unwrap_or(""),
            self.correlation.as_deref().unwrap_or(""),
        ];
        sha256_hex(&parts.join("\n"))
    }
}

/// A request argument: hex of raw bytes, which Rust (like the Redis crate) must read as UTF-8.
fn text_arg(arg: Option<&str>) -> Result<String, String> {
    let bytes = hex::decode(arg.ok_or("missing argument")?).map_err(|e| e.to_string())?;
    String::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"))
}

fn answer(line: &str) -> Result<String, String> {
    let mut words = line.split(' ');
    let op = words.next().unwrap_or("");
    match op {
        "session" => {
            let data: SessionData =
                serde_json::from_str(&text_arg(words.next())?).map_err(|e| e.to_string())?;
            let json = serde_json::to_string(&data).map_err(|e| e.to_string())?;
            Ok(hex::encode(json))
        }
        "scope" => {
            let scope: ReplyScope =
                serde_json::from_str(&text_arg(words.next())?).map_err(|e| e.to_string())?;
            let json = serde_json::to_string(&scope).map_err(|e| e.to_string())?;
            Ok(format!("{} {}", hex::encode(json), scope.scope_hash()))
        }
        "tg" | "wh" => {
            let (a, b, c) = (text_arg(words.next())?, text_arg(words.next())?, text_arg(words.next())?);
            Ok(sha256_hex(&format!("{op}:{a}:{b}:{c}")))
        }
        _ => Err(format!("unknown op {op:?}")),
    }
}

struct OneLine<'a>(&'a str);

impl fmt::Display for OneLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.replace(['\n', '\r'], " "))
    }
}

fn main() -> io::Result<()> {
    let stdin = io::stdin();
    let mut out = io::BufWriter::new(io::stdout().lock());
    for line in stdin.lock().lines() {
        let line = line?;
        match answer(&line) {
            Ok(reply) => writeln!(out, "ok {reply}")?,
            Err(message) => writeln!(out, "err {}", OneLine(&message))?,
        }
        out.flush()?;
    }
    Ok(())
}
