//! Single sign-on against the test kit's fake identity provider: the whole authorization code
//! flow with PKCE signs a person in with the role their groups map to; a wrong `state`, a wrong
//! `nonce`, an expired ID token, a disallowed domain, a replayed callback and a callback from
//! another browser are each refused with 403 and no session.

use codemill_core::config::OidcConfig;
use codemill_server::{OidcSettings, ServerConfig};
use codemill_testkit::fakes::oidc::{FakeIdp, Person, Tamper};
use secrecy::SecretString;

use crate::dashboard::{client, get_page, session_cookie};
use crate::harness::{Db, Server, config, start_with};

/// Where people reach the dashboard; the provider sends them back there.
const PUBLIC: &str = "http://codemill.test";

fn amy() -> Person {
    Person {
        subject: "u-amy".into(),
        email: Some("Amy@Acme.example".into()),
        email_verified: true,
        groups: vec!["eng".into()],
    }
}

async fn setup() -> (Server, FakeIdp) {
    let idp = FakeIdp::start("codemill", "client-secret-1", amy())
        .await
        .unwrap();
    let oidc = OidcConfig {
        provider: "Acme SSO".into(),
        issuer: idp.issuer().to_string(),
        client_id: "codemill".into(),
        client_secret_env: "UNUSED_HERE".into(),
        allowed_domains: vec!["acme.example".into()],
        allowed_groups: vec![],
        role_claim: "groups".into(),
        roles: [("eng".to_string(), "approver".to_string())].into(),
        default_role: "viewer".into(),
    };
    let server = start_with(
        Db::sqlite().await,
        ServerConfig {
            public_url: Some(PUBLIC.into()),
            oidc: Some(OidcSettings {
                config: oidc,
                client_secret: SecretString::from("client-secret-1"),
            }),
            ..config()
        },
    )
    .await;
    (server, idp)
}

fn location(r: &reqwest::Response) -> String {
    r.headers()["location"].to_str().unwrap().to_string()
}

/// The pending sign-in cookie a response sets.
fn pending_cookie(r: &reqwest::Response) -> Option<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("codemill_sign_in=") && !v.starts_with("codemill_sign_in=;"))
        .map(|v| v.split(';').next().unwrap().to_string())
}

struct Back {
    /// The callback URL on the test server, and the browser's pending cookie.
    callback: String,
    cookie: String,
}

/// Start a sign-in and go through the provider; stop before the callback.
async fn to_provider_and_back(server: &Server) -> Back {
    let r = client()
        .get(format!("{}/login/oidc?next=/tickets/PROJ-1", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let cookie = pending_cookie(&r).expect("a pending sign-in cookie");
    let to_idp = location(&r);
    for part in [
        "code_challenge_method=S256",
        "code_challenge=",
        "nonce=",
        "state=",
        "redirect_uri=http%3A%2F%2Fcodemill.test%2Flogin%2Foidc%2Fcallback",
    ] {
        assert!(to_idp.contains(part), "{part} missing from {to_idp}");
    }
    let r = client().get(&to_idp).send().await.unwrap();
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
    let back = location(&r);
    let callback = back.replacen(PUBLIC, &server.base, 1);
    assert_ne!(
        callback, back,
        "the provider sends people back to the public URL"
    );
    Back { callback, cookie }
}

async fn come_back(back: &Back, cookie: bool) -> (u16, String, Option<String>) {
    let mut req = client().get(&back.callback);
    if cookie {
        req = req.header("cookie", &back.cookie);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let session = session_cookie(&r).map(|(c, _)| c);
    let body = if status == 303 {
        location(&r)
    } else {
        r.text().await.unwrap()
    };
    (status, body, session)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_sign_on_admits_the_right_people_with_their_role() {
    let (server, idp) = setup().await;
    let (status, login) = get_page(&server, "", "/login").await;
    assert_eq!(status, 200);
    assert!(login.contains("Sign in with Acme SSO"), "{login}");

    // The whole flow: back where they wanted to go, signed in as an approver.
    let back = to_provider_and_back(&server).await;
    let (status, to, session) = come_back(&back, true).await;
    assert_eq!(status, 303, "{to}");
    assert_eq!(to, "/tickets/PROJ-1");
    let session = session.expect("a session");
    let (status, board) = get_page(&server, &session, "/").await;
    assert_eq!(status, 200);
    assert!(board.contains("amy@acme.example (approver)"), "{board}");
    let user = server
        .db
        .store
        .user("amy@acme.example")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(user.role, "approver");
    // The token request carried the client's secret and the PKCE verifier.
    let token = idp
        .requests()
        .into_iter()
        .find(|r| r.path == "/token")
        .unwrap();
    assert!(
        token
            .header("authorization")
            .is_some_and(|a| a.starts_with("Basic "))
    );

    // The same callback again (a replay): the sign-in was used up.
    let (status, page, session) = come_back(&back, true).await;
    assert_eq!(status, 403);
    assert!(page.contains("expired or was already used"), "{page}");
    assert!(session.is_none());

    // A callback in a browser that did not start the sign-in.
    let back = to_provider_and_back(&server).await;
    let (status, _, session) = come_back(&back, false).await;
    assert_eq!((status, session), (403, None));

    // What a forged or broken answer gets: 403, a reason, no session.
    for (tamper, says) in [
        (Tamper::WrongState, "state does not match"),
        (Tamper::WrongNonce, "was refused: Invalid nonce"),
        (Tamper::Expired, "was refused: Expired"),
    ] {
        idp.tamper(tamper);
        let back = to_provider_and_back(&server).await;
        let (status, page, session) = come_back(&back, true).await;
        assert_eq!(status, 403, "{tamper:?}: {page}");
        assert!(page.contains(says), "{tamper:?}: {page}");
        assert!(session.is_none(), "{tamper:?}");
    }
    idp.tamper(Tamper::Nothing);

    // Someone from a domain that is not allowed, and an unverified e-mail.
    for person in [
        Person {
            subject: "u-eve".into(),
            email: Some("eve@evil.example".into()),
            ..amy()
        },
        Person {
            subject: "u-mallory".into(),
            email: Some("mallory@acme.example".into()),
            email_verified: false,
            ..amy()
        },
    ] {
        idp.set_person(person.clone());
        let back = to_provider_and_back(&server).await;
        let (status, page, session) = come_back(&back, true).await;
        assert_eq!(status, 403, "{person:?}: {page}");
        assert!(
            page.contains("not allowed") || page.contains("no verified e-mail"),
            "{page}"
        );
        assert!(session.is_none());
    }
    assert!(
        server
            .db
            .store
            .user("eve@evil.example")
            .await
            .unwrap()
            .is_none()
    );
}
