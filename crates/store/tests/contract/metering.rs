//! Metering: model calls recorded by the gateway and the spend sums budgets are checked against.

use chrono::{TimeZone, Utc};
use codemill_core::cost::Usage;
use codemill_store::{ModelCall, SpendScope};

use crate::harness::Db;

fn call(job: &str, ticket: &str, project: &str, day: u32, cost: f64, tokens: u64) -> ModelCall {
    ModelCall {
        at: Utc.with_ymd_and_hms(2026, 12, day, 23, 59, 59).unwrap(),
        job: job.into(),
        ticket: ticket.into(),
        project: project.into(),
        stage: "implement".into(),
        round: 0,
        angle: None,
        api: "anthropic".into(),
        model: "m".into(),
        usage: Usage {
            input_tokens: tokens,
            output_tokens: 1,
            cache_read_tokens: 2,
            cache_write_tokens: 3,
        },
        cost_usd: cost,
        latency_ms: 12,
        status: 200,
        streamed: true,
        refused: None,
    }
}

pub async fn spend_sums_by_job_ticket_project_and_day(db: Db) {
    let s = &db.store;
    let empty = s
        .spend(SpendScope {
            job: "j1",
            ticket: "WEB-1",
            project: "WEB",
            day: "2026-12-05",
        })
        .await
        .unwrap();
    assert_eq!(empty.job_usd, 0.0);
    assert_eq!(empty.job_tokens, 0);
    s.record_model_call(&call("j1", "WEB-1", "WEB", 5, 1.5, 100))
        .await
        .unwrap();
    s.record_model_call(&call("j1", "WEB-1", "WEB", 5, 0.25, 10))
        .await
        .unwrap();
    // An earlier job of the same ticket, the day before.
    s.record_model_call(&call("j0", "WEB-1", "WEB", 4, 2.0, 5))
        .await
        .unwrap();
    // Another project the same day.
    let mut refused = call("j9", "API-3", "API", 5, 0.0, 0);
    refused.refused = Some("day_usd".into());
    refused.angle = Some("security".into());
    s.record_model_call(&refused).await.unwrap();
    s.record_model_call(&call("j8", "API-2", "API", 5, 4.0, 7))
        .await
        .unwrap();
    let spend = s
        .spend(SpendScope {
            job: "j1",
            ticket: "WEB-1",
            project: "WEB",
            day: "2026-12-05",
        })
        .await
        .unwrap();
    assert!((spend.job_usd - 1.75).abs() < 1e-9, "{spend:?}");
    assert_eq!(spend.job_tokens, 100 + 10 + 2 * 6);
    assert!((spend.ticket_usd - 3.75).abs() < 1e-9);
    assert!((spend.project_day_usd - 1.75).abs() < 1e-9);
    assert!((spend.day_usd - 5.75).abs() < 1e-9);
    let per_project = s.spend_by_project("2026-12-05").await.unwrap();
    let summary: Vec<(String, u64, u64)> = per_project
        .iter()
        .map(|p| (p.project.clone(), (p.usd * 100.0).round() as u64, p.calls))
        .collect();
    assert_eq!(
        summary,
        [("API".to_string(), 400, 2), ("WEB".to_string(), 175, 2)]
    );
    let calls = s.model_calls("j9").await.unwrap();
    assert_eq!(calls, vec![refused]);
    assert_eq!(calls[0].day(), "2026-12-05");
}
