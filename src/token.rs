//! The long-lived token: where it comes from, how it is kept secret, and what
//! its JWT payload says about its expiry.
//!
//! The token is re-read from its source at every sync attempt, so an operator
//! replaces an expired or revoked token by rewriting the file; no restart is
//! needed. It is held in a [`Secret`], whose `Debug` and `Display` print `***`,
//! so it cannot reach a log line or an error message by accident.

use std::fmt;
use std::path::PathBuf;

use base64::Engine as _;

/// Environment variable that holds the token (first place looked at).
pub const TOKEN_ENV_VAR: &str = "KOMMO_TOKEN";
/// File name of the token inside systemd's `$CREDENTIALS_DIRECTORY`.
pub const CREDENTIAL_NAME: &str = "kommo-token";

/// A secret string that never prints itself.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the one place that must send it (the HTTP header).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Where the token is read from, in order: `KOMMO_TOKEN`, `kommo.token_file`,
/// `$CREDENTIALS_DIRECTORY/kommo-token`; or a token given as a value
/// ([`TokenSource::fixed`], for `--demo`), which nothing else overrides.
#[derive(Clone, Debug, Default)]
pub struct TokenSource {
    /// `kommo.token_file` from the configuration.
    token_file: Option<PathBuf>,
    /// A token held by the program itself.
    fixed: Option<Secret>,
}

/// Why no token could be read. Messages name the source, never the content.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error(
        "no Kommo token found: set the environment variable {TOKEN_ENV_VAR}, or kommo.token_file \
         in the configuration, or pass a systemd credential named {CREDENTIAL_NAME} \
         (LoadCredential=kommo-token:/path/to/token)"
    )]
    Missing,
    #[error(
        "cannot read the token file {path} (kommo.token_file): {source}; check that the file \
         exists and is readable by this user"
    )]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the token in {origin} is empty; paste the long-lived token from the Kommo integration settings into it"
    )]
    Empty { origin: String },
}

impl TokenSource {
    /// The usual sources, with `kommo.token_file` from the configuration.
    pub fn configured(token_file: Option<PathBuf>) -> TokenSource {
        TokenSource {
            token_file,
            fixed: None,
        }
    }

    /// A source that always gives `token` (the simulator's, for `--demo`).
    pub fn fixed(token: Secret) -> TokenSource {
        TokenSource {
            token_file: None,
            fixed: Some(token),
        }
    }

    /// Reads the token now, from the first source that is set.
    pub fn read(&self) -> Result<Secret, TokenError> {
        if let Some(token) = &self.fixed {
            return Ok(token.clone());
        }
        if let Some(value) = std::env::var_os(TOKEN_ENV_VAR) {
            return clean(
                value.to_string_lossy().into_owned(),
                TOKEN_ENV_VAR.to_string(),
            );
        }
        if let Some(path) = &self.token_file {
            return read_file(path.clone());
        }
        if let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY") {
            let path = PathBuf::from(dir).join(CREDENTIAL_NAME);
            if path.exists() {
                return read_file(path);
            }
        }
        Err(TokenError::Missing)
    }

    /// A description of where the token comes from, for messages ("the file /x").
    pub fn describe(&self) -> String {
        if self.fixed.is_some() {
            "the token the program was given".to_string()
        } else if std::env::var_os(TOKEN_ENV_VAR).is_some() {
            format!("the environment variable {TOKEN_ENV_VAR}")
        } else if let Some(path) = &self.token_file {
            format!("the file {} (kommo.token_file)", path.display())
        } else if std::env::var_os("CREDENTIALS_DIRECTORY").is_some() {
            format!("the systemd credential {CREDENTIAL_NAME}")
        } else {
            format!("{TOKEN_ENV_VAR}, kommo.token_file or the systemd credential {CREDENTIAL_NAME}")
        }
    }
}

fn read_file(path: PathBuf) -> Result<Secret, TokenError> {
    warn_if_exposed(&path);
    match std::fs::read_to_string(&path) {
        Ok(text) => clean(text, format!("the file {}", path.display())),
        Err(source) => Err(TokenError::Unreadable { path, source }),
    }
}

/// Warns when the token file can be read by other users: by anyone, or by
/// a group other than this process's own (a file shared with the service's
/// own group, as the README's option B does, is fine).
#[cfg(unix)]
fn warn_if_exposed(path: &std::path::Path) {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    let mode = meta.permissions().mode() & 0o777;
    let others = mode & 0o007 != 0;
    let foreign_group = mode & 0o070 != 0 && effective_gid() != Some(meta.gid());
    if others || foreign_group {
        tracing::warn!(
            file = %path.display(),
            mode = format!("{mode:o}"),
            "the token file {} can be read by other users (mode {mode:o}); restrict it with: chmod 600 {}",
            path.display(),
            path.display()
        );
    }
}

/// This process's effective group id, from `/proc/self/status`.
#[cfg(unix)]
fn effective_gid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Gid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

#[cfg(not(unix))]
fn warn_if_exposed(_path: &std::path::Path) {}

fn clean(text: String, origin: String) -> Result<Secret, TokenError> {
    let trimmed = text.trim();
    let trimmed = trimmed.strip_prefix("Bearer ").unwrap_or(trimmed).trim();
    if trimmed.is_empty() {
        return Err(TokenError::Empty { origin });
    }
    Ok(Secret::new(trimmed))
}

/// The expiry (`exp`, Unix seconds) of a JWT, read without verifying the
/// signature, as Kommo's own SDK does. `None` when the token is not a JWT or
/// carries no `exp`: such a token is treated as opaque, not as an error.
pub fn jwt_expiry(token: &Secret) -> Option<i64> {
    let mut parts = token.expose().split('.');
    let (_header, payload, _signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let exp = claims.get("exp")?;
    exp.as_i64().or_else(|| exp.as_f64().map(|f| f as i64))
}

/// What the token's expiry means now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpiryState {
    /// Not a JWT or no `exp`: nothing known.
    Unknown,
    /// Valid for more than the warning period.
    Valid { expires_at: i64 },
    /// Valid, but expires within the warning period.
    ExpiresSoon { expires_at: i64, days_left: i64 },
    /// Already expired: no request may be sent with it.
    Expired { expires_at: i64 },
}

impl ExpiryState {
    /// The expiry as `--check` and `--status` print it: the date and the
    /// days left, or that the token carries none.
    pub fn describe(&self, now: i64) -> String {
        use crate::clock::format_unix;
        match *self {
            ExpiryState::Unknown => "no expiry in the token (not a JWT with an exp claim)".into(),
            ExpiryState::Valid { expires_at } => format!(
                "{} ({} days left)",
                format_unix(expires_at),
                (expires_at - now) / 86_400
            ),
            ExpiryState::ExpiresSoon {
                expires_at,
                days_left,
            } => format!(
                "{} (WARNING: {days_left} days left; replace the token soon)",
                format_unix(expires_at)
            ),
            ExpiryState::Expired { expires_at } => format!("{} (EXPIRED)", format_unix(expires_at)),
        }
    }
}

/// Classifies a token's expiry at `now` (Unix seconds) against a warning period in days.
pub fn expiry_state(token: &Secret, now: i64, warning_days: u32) -> ExpiryState {
    match jwt_expiry(token) {
        None => ExpiryState::Unknown,
        Some(expires_at) if expires_at <= now => ExpiryState::Expired { expires_at },
        Some(expires_at) => {
            let left = expires_at - now;
            if left < i64::from(warning_days) * 86_400 {
                ExpiryState::ExpiresSoon {
                    expires_at,
                    days_left: left / 86_400,
                }
            } else {
                ExpiryState::Valid { expires_at }
            }
        }
    }
}

/// Builds an unsigned JWT-shaped token with the given `exp`, for the demo and tests.
pub fn fake_jwt(exp: i64) -> Secret {
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = engine.encode(br#"{"typ":"JWT","alg":"RS256"}"#);
    let payload = engine.encode(
        serde_json::json!({"aud": "demo", "jti": fastrand::u64(..).to_string(), "exp": exp, "account_id": 31234567})
            .to_string(),
    );
    Secret::new(format!("{header}.{payload}.c2lnbmF0dXJl"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_prints_itself() {
        let s = Secret::new("eyJhbGciOi.super.secret");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(format!("{s:?}"), "Secret(***)");
    }

    #[test]
    fn reads_exp_from_a_jwt_and_treats_garbage_as_opaque() {
        let t = fake_jwt(1_900_000_000);
        assert_eq!(jwt_expiry(&t), Some(1_900_000_000));
        assert_eq!(jwt_expiry(&Secret::new("not-a-jwt")), None);
        assert_eq!(jwt_expiry(&Secret::new("a.b.c")), None);
    }

    #[test]
    fn classifies_expiry() {
        let now = 1_800_000_000;
        let soon = fake_jwt(now + 3 * 86_400 + 10);
        assert_eq!(
            expiry_state(&soon, now, 14),
            ExpiryState::ExpiresSoon {
                expires_at: now + 3 * 86_400 + 10,
                days_left: 3
            }
        );
        assert!(matches!(
            expiry_state(&fake_jwt(now - 1), now, 14),
            ExpiryState::Expired { .. }
        ));
        assert!(matches!(
            expiry_state(&fake_jwt(now + 100 * 86_400), now, 14),
            ExpiryState::Valid { .. }
        ));
        assert_eq!(
            expiry_state(&Secret::new("opaque"), now, 14),
            ExpiryState::Unknown
        );
    }
}
