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

pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap()
}

/// An `application/x-www-form-urlencoded` body, as a browser sends a form.
pub(crate) fn form(fields: &[(&str, &str)]) -> String {
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

/// The CSRF token a page's forms carry.
pub(crate) fn csrf_of(html: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let at = html.find(marker).expect("a form with a CSRF token") + marker.len();
    html[at..at + html[at..].find('"').unwrap()].to_string()
}

/// The `name=value` part of the session cookie a response sets, and the whole header.
pub(crate) fn session_cookie(r: &reqwest::Response) -> Option<(String, String)> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("codemill_session="))
        .map(|v| (v.split(';').next().unwrap().to_string(), v.to_string()))
}

pub(crate) async fn sign_in(base: &str, user: &str, password: &str) -> reqwest::Response {
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
                subtask: None,
                refine: None,
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
    // Sign-out ends the session (it is deleted from the store, not just from the browser); it
    // is a form post like any other, so it needs the session's CSRF token.
    let logout = |token: String| {
        client()
            .post(format!("{base}/logout"))
            .header("cookie", &cookie)
            .header("origin", base.as_str())
            .header("sec-fetch-site", "same-origin")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(&[("csrf", &token)]))
            .send()
    };
    assert_eq!(logout("forged".into()).await.unwrap().status(), 403);
    let r = logout(csrf_of(&html)).await.unwrap();
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

/// A signed-in session cookie of a new user with `role`.
pub(crate) async fn session_of(server: &crate::harness::Server, name: &str, role: &str) -> String {
    let hash = hash_password(&SecretString::from(PASSWORD)).unwrap();
    server
        .db
        .store
        .create_user(name, role, &hash)
        .await
        .unwrap();
    session_cookie(&sign_in(&server.base, name, PASSWORD).await)
        .unwrap()
        .0
}

pub(crate) async fn get_page(
    server: &crate::harness::Server,
    cookie: &str,
    path: &str,
) -> (u16, String) {
    let r = client()
        .get(format!("{}{path}", server.base))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

pub(crate) async fn post_form(
    server: &crate::harness::Server,
    cookie: &str,
    path: &str,
    fields: &[(&str, &str)],
) -> (u16, String) {
    let r = client()
        .post(format!("{}{path}", server.base))
        .header("cookie", cookie)
        .header("origin", server.base.as_str())
        .header("sec-fetch-site", "same-origin")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(fields))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_job_page_shows_the_proposal_and_only_approvers_decide() {
    use crate::harness::Call;

    let server = start(Db::sqlite().await).await;
    let store = &server.db.store;
    let ticket = store
        .create_ticket(
            &"PROJ".parse().unwrap(),
            "Add a flag",
            "Body with <b>markup</b> & <script>x()</script>",
            &[],
        )
        .await
        .unwrap();
    let events = codemill_testkit::journal::to_approval(&ticket.key);
    let job = codemill_core::ids::JobId::new();
    store
        .create_job(job, &ticket.key, &events[0])
        .await
        .unwrap();
    for (i, e) in events.iter().enumerate().skip(1) {
        store.append(job, i as i64, e).await.unwrap();
    }
    let viewer = session_of(&server, "vic", "viewer").await;
    let approver = session_of(&server, "amy", "approver").await;

    // Without a session: to sign-in, coming back here afterwards.
    let r = client()
        .get(format!("{}/tickets/PROJ-1", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["location"], "/login?next=/tickets/PROJ-1");

    // A viewer sees the job, escaped, and no decision.
    let (status, html) = get_page(&server, &viewer, "/tickets/PROJ-1").await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("data-status=\"awaiting_approval\""), "{html}");
    assert!(
        html.contains("&#60;script&#62;x()&#60;/script&#62;"),
        "{html}"
    );
    assert!(!html.contains("<script>"), "{html}");
    assert!(html.contains("<code class=\"commit\">c1</code>"), "{html}");
    assert!(!html.contains("class=\"approve\""), "{html}");
    let token = csrf_of(&html);
    assert!(token.starts_with("cm_"), "the page's token: {token:?}");
    let (status, said) = post_form(
        &server,
        &viewer,
        "/tickets/PROJ-1/approve",
        &[("csrf", &token), ("commit", "c1")],
    )
    .await;
    assert_eq!(status, 403, "{said}");
    assert!(said.contains("vic is a viewer"), "{said}");

    // An approver sees the buttons; a post needs the session's token and names the commit.
    let (_, html) = get_page(&server, &approver, "/tickets/PROJ-1").await;
    assert!(html.contains("class=\"approve\""), "{html}");
    assert!(html.contains("name=\"commit\" value=\"c1\""), "{html}");
    let token = csrf_of(&html);
    for bad in ["", "forged"] {
        let (status, _) = post_form(
            &server,
            &approver,
            "/tickets/PROJ-1/approve",
            &[("csrf", bad), ("commit", "c1")],
        )
        .await;
        assert_eq!(status, 403, "token {bad:?}");
    }
    let (status, html) = post_form(
        &server,
        &approver,
        "/tickets/PROJ-1/reject",
        &[("csrf", &token), ("reason", "  ")],
    )
    .await;
    assert_eq!(status, 400);
    assert!(html.contains("the reason is empty: say why"), "{html}");
    assert!(server.control.calls().is_empty(), "nothing was decided yet");
    let (status, _) = post_form(
        &server,
        &approver,
        "/tickets/PROJ-1/approve",
        &[("csrf", &token), ("commit", "c1")],
    )
    .await;
    assert_eq!(status, 303);
    assert_eq!(
        server.control.calls(),
        vec![Call::Approve {
            ticket: "PROJ-1".into(),
            by: "user:amy".into(),
            seen: Some("c1".into()),
        }]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_wrong_passwords_are_slowed_down_with_429() {
    let server = start(Db::sqlite().await).await;
    let hash = hash_password(&SecretString::from(PASSWORD)).unwrap();
    server
        .db
        .store
        .create_user("ada", "viewer", &hash)
        .await
        .unwrap();
    for _ in 0..5 {
        assert_eq!(
            sign_in(&server.base, "ada", "wrong password!")
                .await
                .status(),
            401
        );
    }
    // Now even the right password waits, and says for how long.
    let r = sign_in(&server.base, "ada", PASSWORD).await;
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=900).contains(&retry), "{retry}");
    assert!(session_cookie(&r).is_none());
    assert!(r.text().await.unwrap().contains("Too many wrong passwords"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_creates_and_revokes_api_tokens_on_the_settings_page() {
    let server = start(Db::sqlite().await).await;
    let admin = session_of(&server, "ada", "admin").await;
    let approver = session_of(&server, "amy", "approver").await;
    let (status, said) = get_page(&server, &approver, "/settings/tokens").await;
    assert_eq!(status, 403);
    assert!(said.contains("only admins manage API tokens"), "{said}");

    let (status, html) = get_page(&server, &admin, "/settings/tokens").await;
    assert_eq!(status, 200, "{html}");
    let token = csrf_of(&html);
    let (status, _) = post_form(
        &server,
        &admin,
        "/settings/tokens",
        &[("csrf", "forged"), ("name", "ci")],
    )
    .await;
    assert_eq!(status, 403);
    let (status, html) = post_form(
        &server,
        &admin,
        "/settings/tokens",
        &[("csrf", &token), ("name", "ci")],
    )
    .await;
    assert_eq!(status, 200, "{html}");
    // Shown once, and it works on the API; only its hash is stored.
    let at = html.find("<pre class=\"new-token\">").unwrap() + "<pre class=\"new-token\">".len();
    let plain = html[at..at + html[at..].find('<').unwrap()].to_string();
    assert!(plain.starts_with("cm_"), "{plain}");
    let api = |t: String| {
        server
            .client
            .get(server.url("/api/tickets"))
            .bearer_auth(t)
            .send()
    };
    assert_eq!(api(plain.clone()).await.unwrap().status(), 200);
    let (_, again) = get_page(&server, &admin, "/settings/tokens").await;
    assert!(!again.contains(&plain), "the token is shown only once");
    assert!(again.contains("data-token=\"ci\""), "{again}");
    let id = server.db.store.api_tokens().await.unwrap()[0].id;
    let (status, _) = post_form(
        &server,
        &admin,
        &format!("/settings/tokens/{id}/revoke"),
        &[("csrf", &token)],
    )
    .await;
    assert_eq!(status, 303);
    assert_eq!(api(plain).await.unwrap().status(), 401, "revoked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_proxy_the_public_origin_is_trusted_and_the_cookie_is_secure() {
    use codemill_server::ServerConfig;

    use crate::harness::{config, start_with};

    let sign_in_from = |base: String, origin: &'static str| async move {
        client()
            .post(format!("{base}/login"))
            .header("origin", origin)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(&[("username", "ada"), ("password", PASSWORD)]))
            .send()
            .await
            .unwrap()
    };
    let hash = hash_password(&SecretString::from(PASSWORD)).unwrap();
    // Without --public-url, a post whose Origin is not this host is cross-origin.
    let plain = start(Db::sqlite().await).await;
    plain
        .db
        .store
        .create_user("ada", "viewer", &hash)
        .await
        .unwrap();
    let r = sign_in_from(plain.base.clone(), "https://codemill.example.com").await;
    assert_eq!(r.status(), 403);
    // With it, that origin is the dashboard's, and the cookie only travels over https.
    let proxied = start_with(
        Db::sqlite().await,
        ServerConfig {
            public_url: Some("https://codemill.example.com/".into()),
            ..config()
        },
    )
    .await;
    proxied
        .db
        .store
        .create_user("ada", "viewer", &hash)
        .await
        .unwrap();
    let r = sign_in_from(proxied.base.clone(), "https://codemill.example.com").await;
    assert_eq!(r.status(), 303);
    let (_, header) = session_cookie(&r).unwrap();
    assert!(header.contains("Secure"), "{header}");
    // A public URL that is no URL is refused when the server is set up.
    let bad = codemill_server::AppState::new(
        proxied.db.store.clone(),
        proxied.control.clone(),
        ServerConfig {
            public_url: Some("codemill.example.com".into()),
            ..config()
        },
    );
    assert!(bad.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_costs_page_shows_spend_per_stage_and_ticket_against_the_budgets() {
    use codemill_server::ServerConfig;

    use crate::harness::{config, start_with};

    let mut budgets = std::collections::HashMap::new();
    budgets.insert(
        "PROJ".to_string(),
        codemill_core::config::Budgets {
            ticket_usd: Some(0.5),
            ..Default::default()
        },
    );
    let server = start_with(
        Db::sqlite().await,
        ServerConfig {
            project_budgets: budgets,
            ..config()
        },
    )
    .await;
    let store = &server.db.store;
    let ticket = store
        .create_ticket(&"PROJ".parse().unwrap(), "Costly <b>one</b>", "", &[])
        .await
        .unwrap();
    let events = codemill_testkit::journal::to_approval(&ticket.key);
    let job = codemill_core::ids::JobId::new();
    store
        .create_job(job, &ticket.key, &events[0])
        .await
        .unwrap();
    for (i, e) in events.iter().enumerate().skip(1) {
        store.append(job, i as i64, e).await.unwrap();
    }
    let viewer = session_of(&server, "vic", "viewer").await;
    let r = client()
        .get(format!("{}/costs", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["location"], "/login?next=/costs");
    let (status, html) = get_page(&server, &viewer, "/costs").await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("data-stage=\"implement\""), "{html}");
    assert!(html.contains("data-ticket=\"PROJ-1\""), "{html}");
    assert!(html.contains("Costly &#60;b&#62;one&#60;/b&#62;"), "{html}");
    // The journal's steps cost $0.25 each: far over the ticket's $0.50 budget, and marked so.
    let row = &html[html.find("data-ticket=\"PROJ-1\"").unwrap()..];
    let row = &row[..row.find("</tr>").unwrap()];
    assert!(row.contains("class=\"over\">$0.50"), "{row}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_live_in_the_store_and_expire_when_unused() {
    let server = crate::harness::start_with(
        Db::sqlite().await,
        codemill_server::ServerConfig {
            session_idle: std::time::Duration::from_secs(2),
            ..crate::harness::config()
        },
    )
    .await;
    let cookie = session_of(&server, "ada", "viewer").await;
    assert_eq!(get_page(&server, &cookie, "/").await.0, 200);
    // Another node on the same store (or this one after a restart) knows the session.
    let other = crate::harness::node(&server.db.store, crate::harness::config()).await;
    let r = client()
        .get(format!("http://{}/", other.addr))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the session is in the store");
    // Unused for longer than the idle limit: over, everywhere.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let r = client()
        .get(format!("{}/", server.base))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "an expired session");
    assert_eq!(r.headers()["location"], "/login?next=/");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_adds_and_removes_users_on_the_settings_page() {
    let server = start(Db::sqlite().await).await;
    let admin = session_of(&server, "root", "admin").await;
    let viewer = session_of(&server, "vic", "viewer").await;
    assert_eq!(get_page(&server, &viewer, "/settings/users").await.0, 403);
    let (status, page) = get_page(&server, &admin, "/settings/users").await;
    assert_eq!(status, 200);
    assert!(page.contains("data-user=\"vic\""), "{page}");
    let csrf = csrf_of(&page);
    let add = |name: &'static str, password: &'static str, token: String| {
        let admin = admin.clone();
        let server = &server;
        async move {
            post_form(
                server,
                &admin,
                "/settings/users",
                &[
                    ("csrf", &token),
                    ("name", name),
                    ("role", "approver"),
                    ("password", password),
                ],
            )
            .await
        }
    };
    // A forged form, a bad name, a short password: refused, nobody added.
    assert_eq!(add("bo", PASSWORD, "forged".into()).await.0, 403);
    let (status, page) = add("bo b<script>", PASSWORD, csrf.clone()).await;
    assert_eq!(status, 400);
    assert!(page.contains("A user name is"), "{page}");
    let (status, page) = add("bo", "short", csrf.clone()).await;
    assert_eq!(status, 400);
    assert!(page.contains("shorter than 10"), "{page}");
    assert!(server.db.store.user("bo").await.unwrap().is_none());
    // Added: bo signs in as an approver.
    let (status, page) = add("bo", PASSWORD, csrf.clone()).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Added bo (approver)."), "{page}");
    assert_eq!(add("bo", PASSWORD, csrf.clone()).await.0, 409);
    let bo = session_cookie(&sign_in(&server.base, "bo", PASSWORD).await)
        .unwrap()
        .0;
    let (_, board) = get_page(&server, &bo, "/").await;
    assert!(board.contains("bo (approver)"), "{board}");
    // Removed: bo's session ends at once. An admin cannot remove themself.
    let (status, _) = post_form(
        &server,
        &admin,
        "/settings/users/bo/remove",
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(status, 303);
    assert_eq!(get_page(&server, &bo, "/").await.0, 303);
    let (status, page) = post_form(
        &server,
        &admin,
        "/settings/users/root/remove",
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(status, 409);
    assert!(page.contains("cannot remove yourself"), "{page}");
    let (status, _) = post_form(
        &server,
        &viewer,
        "/settings/users/root/remove",
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(status, 403);
    assert!(server.db.store.user("root").await.unwrap().is_some());
}

/// With `[telemetry] trace_url`, a job page links to the job's trace (its id is the job's);
/// without it, no link.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_page_links_to_its_trace_when_a_trace_url_is_set() {
    use codemill_server::ServerConfig;

    use crate::harness::{config, start_with};

    for trace_url in [
        Some("https://langfuse.example/project/p1/traces/{trace_id}".to_string()),
        None,
    ] {
        let server = start_with(
            Db::sqlite().await,
            ServerConfig {
                trace_url: trace_url.clone(),
                ..config()
            },
        )
        .await;
        let store = &server.db.store;
        let ticket = store
            .create_ticket(&"PROJ".parse().unwrap(), "Traced", "", &[])
            .await
            .unwrap();
        let events = codemill_testkit::journal::to_approval(&ticket.key);
        let job = codemill_core::ids::JobId::new();
        store
            .create_job(job, &ticket.key, &events[0])
            .await
            .unwrap();
        let viewer = session_of(&server, "vic", "viewer").await;
        let (status, html) = get_page(&server, &viewer, &format!("/tickets/{}", ticket.key)).await;
        assert_eq!(status, 200, "{html}");
        let link = format!(
            "<a class=\"trace\" href=\"https://langfuse.example/project/p1/traces/{}\">trace</a>",
            job.trace_id()
        );
        assert_eq!(html.contains(&link), trace_url.is_some(), "{html}");
        assert_eq!(html.contains("class=\"trace\""), trace_url.is_some());
    }
}
