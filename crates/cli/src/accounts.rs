//! `codemill token` and `codemill user`: API tokens (only their hashes stored) and the people
//! who sign in to the dashboard.

use std::process::ExitCode;

use anyhow::{Result, anyhow};

use crate::commands::Opened;
use crate::output::{err, out};

pub async fn token_create(opened: &Opened, name: &str) -> Result<ExitCode> {
    let name = codemill_server::token_name(name).map_err(|why| anyhow!("{why}"))?;
    let plain = codemill_server::new_token();
    let row = opened
        .store
        .create_api_token(name, &codemill_server::hash_token(&plain))
        .await?;
    err(&format!(
        "Created API token {} ({}). It is shown once; only its hash is stored:",
        row.id, row.name
    ));
    out(&plain);
    Ok(ExitCode::SUCCESS)
}

/// `codemill token list`.
pub async fn token_list(opened: &Opened, json: bool) -> Result<ExitCode> {
    let tokens = opened.store.api_tokens().await?;
    if json {
        crate::output::json(&serde_json::to_value(&tokens)?);
        return Ok(ExitCode::SUCCESS);
    }
    if tokens.is_empty() {
        out("No API tokens. Create one with `codemill token create NAME`.");
    }
    for t in &tokens {
        let state = match t.revoked_at {
            Some(at) => format!("revoked {}", at.format("%Y-%m-%d %H:%M")),
            None => "active".into(),
        };
        out(&format!(
            "{:>4}  {:<20} created {}  {state}",
            t.id,
            t.name,
            t.created_at.format("%Y-%m-%d %H:%M")
        ));
    }
    Ok(ExitCode::SUCCESS)
}

/// `codemill user add NAME --role R --password-stdin`: the password is one line of stdin,
/// hashed with argon2id before it reaches the store.
pub async fn user_add(opened: &Opened, name: &str, role: &str) -> Result<ExitCode> {
    if !codemill_server::users::valid_name(name) {
        return Err(anyhow!(
            "user name {name:?}: use 1–64 letters, digits, '.', '_', '-' or '@'"
        ));
    }
    let role = codemill_server::users::parse_role(role)
        .ok_or_else(|| anyhow!("role {role:?}: use admin, approver or viewer"))?;
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| anyhow!("reading the password from stdin: {e}"))?;
    let password = secrecy::SecretString::from(line.trim_end_matches(['\n', '\r']).to_string());
    let hash = codemill_server::users::hash_password(&password)
        .map_err(|e| anyhow!("{e} (give it on stdin: `echo … | codemill user add {name} --role {role} --password-stdin`)"))?;
    match opened.store.create_user(name, role, &hash).await {
        Ok(u) => {
            out(&format!("Added user {} ({})", u.name, u.role));
            Ok(ExitCode::SUCCESS)
        }
        Err(codemill_store::StoreError::UserExists(n)) => Err(anyhow!(
            "a user named {n:?} already exists (remove it first with `codemill user remove {n}`)"
        )),
        Err(e) => Err(e.into()),
    }
}

/// `codemill user list [--json]`: names, roles and when they were added.
pub async fn user_list(opened: &Opened, json: bool) -> Result<ExitCode> {
    let users = opened.store.users().await?;
    if json {
        crate::output::json(&serde_json::to_value(&users)?);
        return Ok(ExitCode::SUCCESS);
    }
    if users.is_empty() {
        out("No users. Add one with `codemill user add NAME --role admin --password-stdin`.");
    }
    for u in &users {
        out(&format!(
            "{:<24} {:<9} added {}",
            u.name,
            u.role,
            u.created_at.format("%Y-%m-%d %H:%M")
        ));
    }
    Ok(ExitCode::SUCCESS)
}

/// `codemill user remove NAME`.
pub async fn user_remove(opened: &Opened, name: &str) -> Result<ExitCode> {
    if opened.store.remove_user(name).await? {
        out(&format!("Removed user {name}"));
        Ok(ExitCode::SUCCESS)
    } else {
        Err(anyhow!("no user named {name:?} (see `codemill user list`)"))
    }
}

/// `codemill token revoke NAME_OR_ID`: by id, or the active token of that name.
pub async fn token_revoke(opened: &Opened, token: &str) -> Result<ExitCode> {
    let tokens = opened.store.api_tokens().await?;
    let found = tokens
        .iter()
        .find(|t| t.revoked_at.is_none() && t.name == token)
        .or_else(|| {
            token
                .parse::<i64>()
                .ok()
                .and_then(|id| tokens.iter().find(|t| t.id == id))
        })
        .ok_or_else(|| anyhow!("no active token named {token:?} and no token with that id (see `codemill token list`)"))?;
    if opened.store.revoke_api_token(found.id).await? {
        out(&format!("Revoked API token {} ({})", found.id, found.name));
    } else {
        out(&format!(
            "API token {} ({}) was already revoked",
            found.id, found.name
        ));
    }
    Ok(ExitCode::SUCCESS)
}
