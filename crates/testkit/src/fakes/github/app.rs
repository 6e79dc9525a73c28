//! GitHub App authentication: installation tokens issued for an RS256 JWT verified against the
//! App's public key, and checked on later requests until they expire.

use serde_json::{Value, json};
use sha2::Digest;

use super::routes::{Out, err, not_found};
use super::{FakeState, now, now_nanos, rfc3339};

impl FakeState {
    pub(super) fn valid_installation_token(&self, bearer: &str) -> bool {
        let t = now();
        !bearer.is_empty()
            && self
                .tokens
                .iter()
                .any(|(token, expires)| token == bearer && *expires > t)
    }

    pub(super) fn access_token(&mut self, id: &str, jwt: &str) -> Out {
        let Some((app_id, installation_id, public_pem)) = self.opts.app.clone() else {
            return err(401, "A JSON web token could not be decoded");
        };
        if let Err(message) = verify_app_jwt(jwt, app_id, &public_pem, now()) {
            return err(401, &message);
        }
        if id.parse::<u64>().ok() != Some(installation_id) {
            return not_found();
        }
        let n = self.id();
        let token = format!(
            "ghs_{}",
            &hex::encode(sha2::Sha256::digest(
                format!("{n}:{}", now_nanos()).as_bytes()
            ))[..36]
        );
        let expires = now() + self.token_ttl_secs;
        self.tokens.push((token.clone(), expires));
        Out::json(
            201,
            json!({
                "token": token,
                "expires_at": rfc3339(expires),
                "permissions": {"issues": "write", "pull_requests": "write", "contents": "write", "metadata": "read", "checks": "read"},
                "repository_selection": "selected"
            }),
        )
    }
}

/// Check an App JWT as GitHub does; the error is GitHub's message.
fn verify_app_jwt(jwt: &str, app_id: u64, public_pem: &str, now: i64) -> Result<(), String> {
    use jsonwebtoken::errors::ErrorKind;
    use jsonwebtoken::{Algorithm, DecodingKey, Validation};

    let undecodable = || "A JSON web token could not be decoded".to_string();
    let expired = || {
        "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires".to_string()
    };
    let key = DecodingKey::from_rsa_pem(public_pem.as_bytes())
        .map_err(|_| "fake GitHub: unusable App public key".to_string())?;
    let mut validation = Validation::new(Algorithm::RS256);
    // GitHub allows no grace on `exp`; `iss` may be a number, so it is checked below.
    validation.leeway = 0;
    let claims = match jsonwebtoken::decode::<Value>(jwt, &key, &validation) {
        Ok(data) => data.claims,
        Err(e) => {
            return Err(match e.kind() {
                ErrorKind::InvalidSignature => "A JSON web token could not be decoded (signature does not match the App's public key)".into(),
                ErrorKind::ExpiredSignature => expired(),
                ErrorKind::MissingRequiredClaim(_) => {
                    "'Issued at' and 'Expiration time' claims are required".into()
                }
                ErrorKind::InvalidKeyFormat | ErrorKind::InvalidRsaKey(_) => {
                    "fake GitHub: unusable App public key".into()
                }
                _ => undecodable(),
            });
        }
    };
    let iss = claims.get("iss").and_then(|v| {
        v.as_u64()
            .or_else(|| v.as_str().and_then(|s| s.parse::<u64>().ok()))
    });
    if iss != Some(app_id) {
        return Err(format!(
            "'Issuer' claim ('iss') must be an Integer or a String representing the App ID {app_id}"
        ));
    }
    let (Some(iat), Some(exp)) = (
        claims.get("iat").and_then(Value::as_i64),
        claims.get("exp").and_then(Value::as_i64),
    ) else {
        return Err("'Issued at' and 'Expiration time' claims are required".into());
    };
    if iat > now + 60 {
        return Err(
            "'Issued at' claim ('iat') must be an Integer representing a time in the past".into(),
        );
    }
    if exp <= now {
        return Err(expired());
    }
    if exp > now + 600 {
        return Err("'Expiration time' claim ('exp') is too far in the future".into());
    }
    Ok(())
}
