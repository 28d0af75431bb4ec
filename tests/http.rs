//! The HTTP listener, started as `koji serve` starts it, on a random port.

mod common;

use common::TestDb;
use koji::App;

async fn healthz_metrics_and_unknown_paths(db: &TestDb) {
    let app = App::build(db.config("")).await.expect("app builds");
    let base = format!("http://127.0.0.1:{}", app.port());
    let core = app.core();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::new();
    let r = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);

    core.handle(common::console("zed@example.org", "hello"))
        .await
        .unwrap();
    let m = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(m.contains("koji_messages_recorded_total 1"), "{m}");
    assert!(m.contains("koji_replies_total 1"), "{m}");
    assert!(m.contains("koji_sessions_active 1"), "{m}");
    assert!(m.contains("koji_report_duration_seconds_count"), "{m}");

    let r = client.get(format!("{base}/nope")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    drop(core);
    stop.send(()).unwrap();
    server.await.unwrap().expect("stops cleanly");
}

on_both_backends!(healthz_metrics_and_unknown_paths);
