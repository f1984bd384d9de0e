//! Proxies that want a user name and password, as on clusters and in
//! companies: the run's traffic and `wandb-core sync` go through a proxy on
//! loopback that refuses anything without the right Basic credentials
//! (common/proxy.rs). The base URL's host never resolves, so whatever
//! reaches the stand-in came through the proxy. W&B's service runs the same
//! scripts where it can, as the bar.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::Ordering::SeqCst;

use common::proxy::AuthProxy;
use common::{install_ours, ours, standin, text};
use testkit::CommandExt as _;
use testkit::{reference_python, scratch_dir};
use wandb_standin::{RunKey, StandIn};

const KEY: &str = "proxy-test-key-0123456789abcdef0123456789abcdef";
/// Resolves nowhere (RFC 6761): only the proxy can reach it.
const BASE_URL: &str = "http://wandb-backend.invalid";

fn upstream(s: &StandIn) -> SocketAddr {
    s.base_url
        .trim_start_matches("http://")
        .parse()
        .expect("the stand-in listens on an address")
}

const SCRIPT: &str = r#"
import sys, wandb
run = wandb.init(project="proxied", id=sys.argv[1])
for i in range(5):
    run.log({"a": i})
run.finish()
"#;

/// Runs SCRIPT online with `python`, for run `id`, with `env` on top.
fn online_run(python: &Path, id: &str, env: &[(&str, String)]) -> Output {
    let work = scratch_dir(&format!("proxy-{id}"));
    common::online_script(python, SCRIPT, &[id], &work, BASE_URL, KEY)
        .env_remove("HTTP_PROXY")
        .env_remove("HTTPS_PROXY")
        .env_remove("NO_PROXY")
        // A wrong password fails within seconds, not after minutes of
        // retries.
        .env("WANDB_INIT_TIMEOUT", "30")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output_limited()
        .unwrap()
}

fn rows(s: &StandIn, id: &str) -> i64 {
    s.store.line_count(
        &RunKey::new("standin", "proxied", id),
        "wandb-history.jsonl",
    )
}

#[test]
fn runs_go_through_a_proxy_that_wants_a_password() {
    let backend = standin(KEY, &[]);
    let proxy = AuthProxy::start("alice", "s3cr%t", upstream(&backend));
    // The password as a URL carries it: percent-encoded.
    let url = proxy.url("alice", "s3cr%25t");
    let ours_py = install_ours();
    for (who, python) in [("ours", ours_py), ("theirs", reference_python())] {
        // The environment's proxy (HTTP_PROXY), as most users set it, and
        // W&B's setting (WANDB_HTTP_PROXY, the SDK's `http_proxy`).
        for (how, var) in [("env", "HTTP_PROXY"), ("setting", "WANDB_HTTP_PROXY")] {
            let id = format!("{who}-{how}");
            let before = proxy.allowed.load(SeqCst);
            let out = online_run(python, &id, &[(var, url.clone())]);
            assert!(out.status.success(), "{who} via {var}: {}", text(&out));
            assert_eq!(rows(&backend, &id), 5, "{who} via {var}: every row");
            assert!(
                proxy.allowed.load(SeqCst) > before,
                "{who} via {var}: through the proxy"
            );
        }
    }
    assert_eq!(
        proxy.refused.load(SeqCst),
        0,
        "both services send the credentials from the start"
    );
}

#[test]
fn a_wrong_proxy_password_is_a_clear_error() {
    let backend = standin(KEY, &[]);
    let proxy = AuthProxy::start("alice", "right", upstream(&backend));
    let out = online_run(
        install_ours(),
        "wrongpass",
        &[("HTTP_PROXY", proxy.url("alice", "wrong"))],
    );
    assert!(!out.status.success(), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.contains("407") || said.contains("Proxy Authentication Required"),
        "the user is told the proxy refused: {said}"
    );
    assert!(proxy.refused.load(SeqCst) > 0);
    assert_eq!(rows(&backend, "wrongpass"), 0);
}

#[test]
fn sync_goes_through_the_proxy_and_no_proxy_bypasses_it() {
    let backend = standin(KEY, &[]);
    let proxy = AuthProxy::start("bob", "pw", upstream(&backend));
    // An offline run, written with our service.
    let work = scratch_dir("proxy-sync");
    let out = Command::new(install_ours())
        .args(["-c", SCRIPT, "offline1"])
        .current_dir(&work)
        .env_remove("WANDB_SERVICE")
        .env("WANDB_MODE", "offline")
        .env("WANDB_DIR", &work)
        .env("HOME", &work)
        .output_limited()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let sync = |base_url: &str, env: &[(&str, String)]| {
        Command::new(ours())
            .arg("sync")
            .arg(work.join("wandb"))
            .current_dir(&work)
            .env_remove("HTTP_PROXY")
            .env_remove("HTTPS_PROXY")
            .env_remove("NO_PROXY")
            .env("WANDB_BASE_URL", base_url)
            .env("WANDB_API_KEY", KEY)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .output_limited()
            .unwrap()
    };
    let out = sync(BASE_URL, &[("HTTP_PROXY", proxy.url("bob", "pw"))]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(rows(&backend, "offline1"), 5);
    let through = proxy.allowed.load(SeqCst);
    assert!(through > 0);

    // NO_PROXY names the backend's host: straight there, the proxy (here
    // one that would refuse) untouched.
    let host = upstream(&backend).ip().to_string();
    let out = sync(
        &backend.base_url,
        &[
            ("HTTP_PROXY", proxy.url("bob", "wrong")),
            ("NO_PROXY", host),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(rows(&backend, "offline1"), 5, "no row twice");
    assert_eq!(proxy.allowed.load(SeqCst), through);
    assert_eq!(proxy.refused.load(SeqCst), 0);
}
