//! The dashboard's sign-in and board over HTTP: a page without a session sends you to sign in,
//! wrong passwords are refused, a session cookie is `HttpOnly` and `SameSite=Lax` and lives in
//! the store (so sign-out and removing the user end it), cross-site posts get 403, every page
//! carries the security headers, and ticket text is escaped.

use codemill_core::pipeline::JobEvent;
use codemill_server::users::hash_password;
use reqwest::redirect::Policy;
use secrecy::SecretString;

use crate::harness::{Db, start};

const PASSWORD: &str = "a long enough secret";

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap()
}

/// An `application/x-www-form-urlencoded` body, as a browser sends a form.
fn form(fields: &[(&str, &str)]) -> String {
    let encode = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                b' ' => "+".to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The `name=value` part of the session cookie a response sets, and the whole header.
fn session_cookie(r: &reqwest::Response) -> Option<(String, String)> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("codemill_session="))
        .map(|v| (v.split(';').next().unwrap().to_string(), v.to_string()))
}

async fn sign_in(base: &str, user: &str, password: &str) -> reqwest::Response {
    client()
        .post(format!("{base}/login"))
        .header("origin", base)
        .header("sec-fetch-site", "same-origin")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[
            ("username", user),
            ("password", password),
            ("next", "/"),
        ]))
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_the_board_and_sign_out() {
    let server = start(Db::sqlite().await).await;
    let store = &server.db.store;
    let hash = hash_password(&SecretString::from(PASSWORD)).unwrap();
    store.create_user("ada", "approver", &hash).await.unwrap();
    // A hostile title, and a job for it.
    let ticket = store
        .create_ticket(
            &"PROJ".parse().unwrap(),
            "<script>alert(1)</script><img src=x onerror=alert(2)>",
            "",
            &[],
        )
        .await
        .unwrap();
    let job = codemill_core::ids::JobId::new();
    store
        .create_job(
            job,
            &ticket.key,
            &JobEvent::Created {
                ticket: ticket.key.clone(),
                project: "PROJ".parse().unwrap(),
                max_rounds: 3,
                acknowledge: false,
                follow_pr: false,
            },
        )
        .await
        .unwrap();
    let base = &server.base;

    // Without a session: to the sign-in page, which has the form and the headers.
    let r = client().get(format!("{base}/")).send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/login?next=/");
    let r = client().get(format!("{base}/login")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert!(r.headers().contains_key("referrer-policy"));
    let page = r.text().await.unwrap();
    assert!(
        page.contains("name=\"username\"") && page.contains("name=\"password\""),
        "{page}"
    );

    // Wrong password, unknown user: refused alike, no session.
    for (user, password) in [("ada", "not the password"), ("nobody", PASSWORD)] {
        let r = sign_in(base, user, password).await;
        assert_eq!(r.status(), 401, "{user}");
        assert!(session_cookie(&r).is_none());
        assert!(
            r.text()
                .await
                .unwrap()
                .contains("Wrong user name or password.")
        );
    }
    // A cross-site post is refused before it is looked at.
    let r = client()
        .post(format!("{base}/login"))
        .header("origin", "https://evil.example")
        .header("sec-fetch-site", "cross-site")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("username", "ada"), ("password", PASSWORD)]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(session_cookie(&r).is_none());

    // The right password: a session cookie, HttpOnly and SameSite=Lax, and the board.
    let r = sign_in(base, "ada", PASSWORD).await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/");
    let (cookie, header) = session_cookie(&r).expect("a session cookie");
    assert!(header.contains("HttpOnly"), "{header}");
    assert!(header.contains("SameSite=Lax"), "{header}");
    let board = client()
        .get(format!("{base}/"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(board.status(), 200);
    let html = board.text().await.unwrap();
    assert!(html.contains("ada (approver)"), "{html}");
    assert!(html.contains("data-ticket=\"PROJ-1\""), "{html}");
    assert!(
        html.contains("&#60;script&#62;alert(1)&#60;/script&#62;"),
        "{html}"
    );
    assert!(
        !html.contains("<script>") && !html.contains("<img src=x"),
        "{html}"
    );
    // Sign-out ends the session (it is deleted from the store, not just from the browser).
    let r = client()
        .post(format!("{base}/logout"))
        .header("cookie", &cookie)
        .header("origin", base.as_str())
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let after = client()
        .get(format!("{base}/"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 303, "signed out");

    // Removing the user ends their sessions.
    let (cookie, _) = session_cookie(&sign_in(base, "ada", PASSWORD).await).unwrap();
    let ok = client()
        .get(format!("{base}/"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert!(store.remove_user("ada").await.unwrap());
    let gone = client()
        .get(format!("{base}/"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 303, "the removed user's session ended");
}
