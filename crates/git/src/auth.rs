//! Credentials for HTTPS remotes: one header git sends to one URL prefix, kept off command lines.
//!
//! The header reaches git only as command-scope config in the environment
//! (`GIT_CONFIG_COUNT`/`GIT_CONFIG_KEY_n`/`GIT_CONFIG_VALUE_n`, see module `run`), so it is never an
//! argument (visible to every local user in `/proc/*/cmdline` and `ps`), never part of a remote URL
//! (which git writes into the clone's config and prints in its messages), and never written to a
//! config file. Git scopes `http.<url>.extraHeader` to URLs under the prefix (scheme, host and port
//! exactly, path by whole segments), and curl drops a custom `Authorization` header when a redirect
//! leaves the host, so the header is not sent anywhere else.

use std::fmt;

use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};

/// A header git sends to one remote URL prefix (git's `http.<url>.extraHeader`), e.g.
/// `Authorization: Basic base64("x-access-token:<token>")` for GitHub. Passed to git through the
/// environment (`GIT_CONFIG_COUNT`/`KEY`/`VALUE`), never as an argument; never shown in errors.
///
/// `url_prefix` is a URL as git's `http.<url>.*` config takes it, e.g. `https://github.com/` or
/// `https://github.com/org/`; `header` is one complete header line without a line break.
#[derive(Clone)]
pub struct HttpAuth {
    pub url_prefix: String,
    pub header: SecretString,
}

impl fmt::Debug for HttpAuth {
    // The header is the credential: only the prefix is shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpAuth")
            .field("url_prefix", &self.url_prefix)
            .finish_non_exhaustive()
    }
}

impl HttpAuth {
    /// GitHub's form for a token (PAT or App installation token): Basic x-access-token:<token>.
    pub fn github_token(url_prefix: &str, token: &SecretString) -> HttpAuth {
        let basic = base64::engine::general_purpose::STANDARD
            .encode(format!("x-access-token:{}", token.expose_secret()));
        HttpAuth {
            url_prefix: url_prefix.to_owned(),
            header: SecretString::from(format!("Authorization: Basic {basic}")),
        }
    }

    /// GitLab's form for an access token (personal, project or group): Basic with the token as
    /// the password of the `oauth2` user.
    pub fn gitlab_token(url_prefix: &str, token: &SecretString) -> HttpAuth {
        let basic = base64::engine::general_purpose::STANDARD
            .encode(format!("oauth2:{}", token.expose_secret()));
        HttpAuth {
            url_prefix: url_prefix.to_owned(),
            header: SecretString::from(format!("Authorization: Basic {basic}")),
        }
    }

    /// The command-scope config entries that carry the header, in order.
    ///
    /// An empty value first: git clears the list of extra headers on it, so a header left in a
    /// config file for this prefix or any broader URL (e.g. the
    /// `http.https://github.com/.extraheader` that CI checkouts leave behind, or a bare
    /// `http.extraHeader`) is not sent alongside ours. Git ignores entries for a less specific URL
    /// than one it has already applied, so everything broader is dropped and cannot come back.
    ///
    /// What this cannot reach: an entry for a URL *more specific* than the prefix (e.g.
    /// `http.https://github.com/org/repo.git.extraHeader`) makes git skip ours for that URL. In
    /// the clone's own config the config check clears such entries (module `repo`), so git then
    /// sends no header there and the remote refuses with a clear error; in the global or system
    /// config they are the operator's deliberate setting for that URL and are left to git.
    pub(crate) fn config_entries(&self) -> [(String, &str); 2] {
        let key = format!("http.{}.extraHeader", self.url_prefix);
        [(key.clone(), ""), (key, self.header.expose_secret())]
    }

    /// `text` with the header value and its credential part replaced by `***`.
    ///
    /// Git never prints extra headers; this is a second line of defence for anything that ends up
    /// in an error message.
    pub(crate) fn scrub(&self, text: &str) -> String {
        let header = self.header.expose_secret();
        let value = header.split_once(':').map_or(header, |(_, v)| v).trim();
        // `Basic <credential>`, `Bearer <credential>`: the credential alone may appear too.
        let credential = value.rsplit(' ').next().unwrap_or(value);
        let mut out = text.to_owned();
        for secret in [header, value, credential] {
            // Very short pieces would match ordinary text; the full value still covers them.
            if secret.len() >= 8 && out.contains(secret) {
                out = out.replace(secret, "***");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_header_debug_and_scrub() {
        let token = SecretString::from("ghs_0123456789abcdef");
        let auth = HttpAuth::github_token("https://github.com/", &token);
        let expected =
            base64::engine::general_purpose::STANDARD.encode("x-access-token:ghs_0123456789abcdef");
        assert_eq!(
            auth.header.expose_secret(),
            format!("Authorization: Basic {expected}")
        );
        let shown = format!("{auth:?}");
        assert!(shown.contains("https://github.com/"));
        assert!(!shown.contains(&expected) && !shown.contains("ghs_"));

        let [reset, header] = auth.config_entries();
        assert_eq!(reset, ("http.https://github.com/.extraHeader".into(), ""));
        assert_eq!(header.0, reset.0);
        assert_eq!(header.1, auth.header.expose_secret());

        assert_eq!(
            auth.scrub(&format!("a {expected} b Authorization: Basic {expected}")),
            "a *** b ***"
        );
        assert_eq!(auth.scrub("nothing here"), "nothing here");
    }
}
