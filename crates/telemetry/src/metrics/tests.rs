use std::time::Duration;

use super::*;

fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn every_family_is_exported_with_conventional_names() {
    let metrics = Metrics::new();
    let status = RouteLabel::new("/_status");
    metrics.http().preregister("GET", &status);
    metrics
        .http()
        .record("GET", &status, 200, Duration::from_millis(3));
    metrics
        .http()
        .record("GET", &RouteLabel::new("/x"), 429, Duration::from_millis(1));
    metrics
        .store()
        .record("get", "ok", Duration::from_micros(80));
    metrics.tokens().issued();
    metrics.tokens().refused("invalid_client");
    metrics.reloads().succeeded(3);
    metrics.reloads().failed();
    metrics.audit().set_backlog(7);
    metrics.audit().written(2);
    metrics.otlp().exported(5);
    metrics.otlp().dropped_queue_full();
    metrics
        .federation()
        .source("north")
        .record(SourceOutcome::Timeout, Duration::from_secs(2));
    metrics.watch_store(|| StoreSnapshot {
        write_batches: Some((2, 9)),
        pool: Some(PoolSnapshot {
            open: 4,
            in_use: 1,
            max: 8,
        }),
        audit_outbox: Some(3),
    });
    let guard = metrics.http().in_flight();
    let text = metrics.render();
    drop(guard);
    let expect = [
        (
            r#"nrls_http_requests_total{method="GET",route="/_status",status="200"}"#,
            1.0,
        ),
        (
            r#"nrls_http_request_duration_seconds_count{method="GET",route="/_status",status="200"}"#,
            1.0,
        ),
        ("nrls_http_requests_in_flight", 1.0),
        ("nrls_rate_limit_rejections_total", 1.0),
        (
            r#"nrls_store_operation_duration_seconds_count{operation="get",result="ok"}"#,
            1.0,
        ),
        (r#"nrls_token_requests_total{result="issued"}"#, 1.0),
        (r#"nrls_token_requests_total{result="invalid_client"}"#, 1.0),
        (r#"nrls_config_reloads_total{result="failure"}"#, 1.0),
        ("nrls_apps_onboarded", 3.0),
        ("nrls_audit_backlog_events", 7.0),
        ("nrls_audit_events_written_total", 2.0),
        ("nrls_audit_outbox_events", 3.0),
        (
            r#"nrls_federation_source_requests_total{source="north",result="timeout"}"#,
            1.0,
        ),
        (
            r#"nrls_federation_source_requests_total{source="north",result="ok"}"#,
            0.0,
        ),
        (
            r#"nrls_federation_source_request_duration_seconds_count{source="north"}"#,
            1.0,
        ),
        ("nrls_store_write_batches_total", 2.0),
        ("nrls_store_write_batch_ops_total", 9.0),
        (r#"nrls_store_pool_connections{state="idle"}"#, 3.0),
        ("nrls_store_pool_max_connections", 8.0),
        ("nrls_otlp_spans_exported_total", 5.0),
        (r#"nrls_otlp_spans_dropped_total{reason="queue_full"}"#, 1.0),
        (
            r#"nrls_otlp_spans_dropped_total{reason="export_failed"}"#,
            0.0,
        ),
        (r#"nrls_build_info{version=""#, f64::NAN),
    ];
    for (series, want) in expect {
        if want.is_nan() {
            assert!(text.contains(series), "{series} missing:\n{text}");
            continue;
        }
        assert_eq!(value(&text, series), Some(want), "{series}:\n{text}");
    }
    // Every name documented in `names` is in the exposition.
    for name in [
        names::HTTP_REQUESTS,
        names::HTTP_DURATION,
        names::HTTP_IN_FLIGHT,
        names::STORE_DURATION,
        names::STORE_WRITE_BATCHES,
        names::STORE_WRITE_OPS,
        names::STORE_POOL_CONNECTIONS,
        names::STORE_POOL_MAX,
        names::AUDIT_OUTBOX,
        names::TOKENS,
        names::RATE_LIMITED,
        names::AUDIT_BACKLOG,
        names::AUDIT_WRITTEN,
        names::FEDERATION_REQUESTS,
        names::FEDERATION_DURATION,
        names::RELOADS,
        names::APPS,
        names::BUILD_INFO,
        names::OTLP_EXPORTED,
        names::OTLP_DROPPED,
    ] {
        assert!(
            text.contains(&format!("\n{name}")),
            "{name} missing:\n{text}"
        );
    }
}

#[test]
fn store_families_are_absent_until_a_store_reports_them() {
    let text = Metrics::new().render();
    assert!(!text.contains("nrls_store_write_batches_total"));
    assert!(!text.contains("nrls_store_pool_connections"));
    assert!(!text.contains("nrls_audit_outbox_events"));
}
