//! The contract: schemathesis fuzzes every operation of `/openapi.json`
//! against a real server and must find nothing; headless Chromium renders
//! `/docs` (Swagger UI) and `/redoc` (Redoc) from the server alone.
//!
//! Both tools are installed by `scripts/contract-tools.sh` (run by
//! `scripts/test.sh`), which exports `LOKIZ_SCHEMATHESIS` and
//! `LOKIZ_CHROMIUM`. Without them these tests fail and say so: a contract
//! check that silently passes is no check.

use std::path::PathBuf;
use std::time::Duration;

use lokiz_api::Components;
use lokiz_tests::spawn_app_with;
use serde_json::Value;

fn tool(var: &str) -> PathBuf {
    match std::env::var_os(var) {
        Some(p) => PathBuf::from(p),
        None => panic!(
            "{var} is not set: run the suite through scripts/test.sh, which installs \
             schemathesis and Chromium (scripts/contract-tools.sh)"
        ),
    }
}

/// Where test artifacts (reports, screenshots) are kept.
fn artifacts() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target")
        .join("test-artifacts");
    std::fs::create_dir_all(&dir).expect("artifact directory");
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_nothing_in_any_operation() {
    let schemathesis = tool("LOKIZ_SCHEMATHESIS");
    // (generated `X-Lokiz-Min-Position`s beyond the store are refused at once,
    // 409, so the default consistency timeout costs the run nothing)
    let app = spawn_app_with(Components::ALL, &[]).await;
    let user = app.register("fuzzer").await;
    // something to find: a published video of the signed-in user
    let (video, _) = app.upload_video(&user, Some("fuzz me")).await;
    let config = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schemathesis.toml");
    let report = artifacts().join("schemathesis");
    let out = tokio::process::Command::new(&schemathesis)
        .arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(app.url("/openapi.json"))
        .arg("--url")
        .arg(&app.address)
        .arg("-H")
        .arg(format!("Authorization: Bearer {}", user.access_token))
        .arg("--report")
        .arg("junit")
        .arg("--report-dir")
        .arg(&report)
        .env("LOKIZ_FUZZ_VIDEO", video.to_string())
        .env(
            "SCHEMATHESIS_HOOKS",
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schemathesis_hooks.py"),
        )
        .env("NO_COLOR", "1")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(600), out)
        .await
        .expect("schemathesis finished within 10 minutes")
        .expect("schemathesis runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    // the summary, for the CI log (scripts/test.sh prints it)
    let summary = stdout
        .find("SUMMARY")
        .map(|i| stdout[i..].to_owned())
        .unwrap_or_else(|| stdout.to_string());
    std::fs::write(artifacts().join("schemathesis-summary.txt"), summary).expect("summary written");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "schemathesis found problems (report in {})",
        report.display()
    );
    assert!(
        !stdout.contains("Failures:") && !stdout.contains("Errors:"),
        "schemathesis reported failures or errors"
    );
    assert!(
        stdout.contains("Tested: ") && stdout.contains(" passed"),
        "schemathesis tested the operations and printed its summary"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docs_render_in_chromium_with_no_request_leaving_the_server() {
    let app = spawn_app_with(Components::ALL, &[]).await;
    render_from_the_server_alone(
        &app,
        "/docs/",
        "docs",
        &[
            "/v1/videos/batch-metadata",
            "/v1/likes/check-batch",
            "/v1/follows/check-batch",
            "/v1/auth/register",
        ],
    )
    .await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redoc_renders_in_chromium_with_no_request_leaving_the_server() {
    let app = spawn_app_with(Components::ALL, &[]).await;
    // the API's title and description come from /openapi.json, rendered by
    // the bundle the server itself serves
    render_from_the_server_alone(
        &app,
        "/redoc",
        "redoc",
        &["LOKIZ API", "Commands answer with"],
    )
    .await;
    let js = app.get("/redoc/redoc.standalone.js", None, None).await;
    assert_eq!(js.status(), reqwest::StatusCode::OK);
    assert!(js.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/javascript"));
    app.stop().await;
}

/// Renders `path` in headless Chromium: the DOM shows every text of
/// `must_show`, and every request the page made went to this server.
async fn render_from_the_server_alone(
    app: &lokiz_tests::TestApp,
    path: &str,
    name: &str,
    must_show: &[&str],
) {
    let chromium = tool("LOKIZ_CHROMIUM");
    let dir = std::env::temp_dir().join(format!("lokiz-chromium-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let netlog = dir.join("netlog.json");
    let screenshot = artifacts().join(format!("{name}.png"));
    let page = app.url(path);
    let common = |cmd: &mut tokio::process::Command| {
        cmd.arg("--headless")
            .arg("--no-sandbox")
            .arg("--disable-gpu")
            .arg("--no-first-run")
            .arg("--disable-background-networking")
            .arg("--disable-component-update")
            .arg("--disable-sync")
            .arg("--disable-default-apps")
            .arg("--disable-extensions")
            .arg("--disable-domain-reliability")
            .arg("--disable-client-side-phishing-detection")
            .arg("--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication")
            .arg(format!("--user-data-dir={}", dir.join("profile").display()))
            .arg("--virtual-time-budget=15000")
            .kill_on_drop(true);
    };
    // the rendered page, with every network request logged
    let mut dump = tokio::process::Command::new(&chromium);
    common(&mut dump);
    dump.arg(format!("--log-net-log={}", netlog.display()))
        .arg("--dump-dom")
        .arg(&page);
    let out = tokio::time::timeout(Duration::from_secs(120), dump.output())
        .await
        .expect("chromium finished")
        .expect("chromium runs");
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for text in must_show {
        assert!(dom.contains(text), "{path} does not show {text}");
    }

    // every URL the page asked for was on this server
    let log: Value = serde_json::from_str(
        &tokio::fs::read_to_string(&netlog)
            .await
            .expect("net log written"),
    )
    .or_else(|_| {
        // a log cut short lacks its closing brackets
        let text = std::fs::read_to_string(&netlog).unwrap_or_default();
        serde_json::from_str(&format!("{}]}}", text.trim_end().trim_end_matches(',')))
    })
    .expect("net log is JSON");
    // The page's own requests: the document and what it asked for (their
    // `initiator` is the page's origin). Chromium's background services
    // (update checks and the like) have no initiator; they are listed too,
    // and none of them may be a CDN the page would have needed.
    let start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"].as_i64();
    let mut requested: Vec<String> = Vec::new();
    let mut background: Vec<String> = Vec::new();
    for e in log["events"].as_array().into_iter().flatten() {
        if e["type"].as_i64() != start_job {
            continue;
        }
        let Some(url) = e["params"]["url"].as_str() else {
            continue;
        };
        let initiator = e["params"]["initiator"].as_str().unwrap_or("");
        if url.starts_with(&app.address) || initiator.starts_with(&app.address) {
            requested.push(url.to_owned());
        } else {
            background.push(url.to_owned());
        }
    }
    requested.sort();
    requested.dedup();
    println!("requests made by {path} ({}):", requested.len());
    for u in &requested {
        println!("  {u}");
    }
    println!("Chromium's own background requests (not the page's): {background:?}");
    std::fs::write(
        artifacts().join(format!("{name}-requests.txt")),
        format!(
            "requests made by {path} ({}), all to {}:\n{}\nChromium's own background requests (not the page's): {}\n",
            requested.len(),
            app.address,
            requested.iter().map(|u| format!("  {u}")).collect::<Vec<_>>().join("\n"),
            background.len()
        ),
    )
    .expect("request log written");
    assert!(
        requested.iter().any(|u| u.ends_with("/openapi.json")),
        "the page loaded the OpenAPI document: {requested:?}"
    );
    assert!(
        requested.iter().any(|u| u.ends_with(".js")),
        "the page loaded its scripts: {requested:?}"
    );
    let leaving: Vec<&String> = requested
        .iter()
        .filter(|u| !u.starts_with(&app.address))
        .collect();
    assert!(
        leaving.is_empty(),
        "the page's requests left the server: {leaving:?}"
    );
    let cdn = [
        "jsdelivr",
        "unpkg",
        "cdnjs",
        "googleapis.com/css",
        "fonts.g",
    ];
    assert!(
        !background.iter().any(|u| cdn.iter().any(|c| u.contains(c))),
        "a CDN was asked for something: {background:?}"
    );

    // a screenshot, kept as an artifact
    let mut shot = tokio::process::Command::new(&chromium);
    common(&mut shot);
    shot.arg(format!("--screenshot={}", screenshot.display()))
        .arg("--window-size=1280,2400")
        .arg(&page);
    let out = tokio::time::timeout(Duration::from_secs(120), shot.output())
        .await
        .expect("chromium finished")
        .expect("chromium runs");
    assert!(out.status.success(), "screenshot taken");
    let png = std::fs::metadata(&screenshot).expect("screenshot written");
    assert!(png.len() > 10_000, "the screenshot shows a rendered page");
    println!("screenshot: {}", screenshot.display());
    let _ = std::fs::remove_dir_all(&dir);
}
