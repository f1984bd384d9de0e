//! Proxies that want a user name and password, as on clusters and in
//! companies: the run's traffic and `wandb-core sync` go through a proxy on
//! loopback that refuses anything without the right Basic credentials
//! (common/proxy.rs). The base URL's host never resolves, so whatever
//! reaches the stand-in came through the proxy. Over HTTPS the clients
//! tunnel with CONNECT and trust the stand-in's CA only through
//! `SSL_CERT_FILE`, as a company's own CA is trusted. W&B's service runs
//! the same scripts where it can, as the bar.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::Ordering::SeqCst;

use base64::Engine as _;
use common::proxy::AuthProxy;
use common::{install_ours, ours, standin, standin_config, text};
use testkit::CommandExt as _;
use testkit::{reference_python, scratch_dir};
use wandb_standin::{RunKey, StandIn, Store};

const KEY: &str = "proxy-test-key-0123456789abcdef0123456789abcdef";
/// Resolves nowhere (RFC 6761): only the proxy can reach it.
const BASE_URL: &str = "http://wandb-backend.invalid";
/// The same over HTTPS: the stand-in's certificate names it.
const TLS_BASE_URL: &str = "https://wandb-backend.invalid";

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
    online_run_at(python, id, BASE_URL, env)
}

fn online_run_at(python: &Path, id: &str, base_url: &str, env: &[(&str, String)]) -> Output {
    let work = scratch_dir(&format!("proxy-{id}"));
    common::online_script(python, SCRIPT, &[id], &work, base_url, KEY)
        .env_remove("HTTP_PROXY")
        .env_remove("HTTPS_PROXY")
        .env_remove("NO_PROXY")
        .env_remove("SSL_CERT_FILE")
        .env_remove("SSL_CERT_DIR")
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

/// A stand-in serving HTTPS for `names`, handing out URLs under `public`.
fn https_standin(names: &[&str], public: Option<&str>) -> StandIn {
    let mut config = standin_config(KEY, &[]);
    config.tls = Some(names.iter().map(|n| n.to_string()).collect());
    config.public_url = public.map(str::to_string);
    StandIn::spawn(config, 0, Store::open(None).unwrap()).unwrap()
}

/// The stand-in's CA in a file, for `SSL_CERT_FILE`.
fn ca_file(s: &StandIn, name: &str) -> String {
    let path = scratch_dir(name).join("ca.pem");
    std::fs::write(&path, s.ca_pem.as_deref().expect("an HTTPS stand-in")).unwrap();
    path.display().to_string()
}

#[test]
fn https_goes_through_the_proxys_connect_tunnel_trusting_the_companys_ca() {
    let backend = https_standin(&["wandb-backend.invalid"], Some(TLS_BASE_URL));
    let proxy = AuthProxy::start("alice", "s3cr%t", backend.addr);
    let url = proxy.url("alice", "s3cr%25t");
    let bare = format!("http://{}", proxy.addr);
    // The credentials as a header of W&B's own setting instead of in the
    // URL: it must reach the proxy on CONNECT.
    let header = format!(
        r#"{{"Proxy-Authorization": "Basic {}"}}"#,
        base64::engine::general_purpose::STANDARD.encode("alice:s3cr%t")
    );
    let ca = ca_file(&backend, "proxy-tls-ca");
    let ours_py = install_ours();
    for (who, python) in [("ours", ours_py), ("theirs", reference_python())] {
        for (how, var, extra) in [
            ("env", "HTTPS_PROXY", None),
            ("setting", "WANDB_HTTPS_PROXY", None),
            ("header", "WANDB_HTTPS_PROXY", Some(&header)),
        ] {
            let id = format!("tls-{who}-{how}");
            let before = proxy.tunnels.load(SeqCst);
            let mut env = vec![
                (
                    var,
                    if extra.is_some() {
                        bare.clone()
                    } else {
                        url.clone()
                    },
                ),
                // Go's wandb-core and ours read the system's CA store and
                // this; Python's requests reads the other.
                ("SSL_CERT_FILE", ca.clone()),
                ("REQUESTS_CA_BUNDLE", ca.clone()),
            ];
            if let Some(h) = extra {
                env.push(("WANDB_X_EXTRA_HTTP_HEADERS", h.to_string()));
            }
            let out = online_run_at(python, &id, TLS_BASE_URL, &env);
            assert!(out.status.success(), "{who} via {var}: {}", text(&out));
            assert_eq!(rows(&backend, &id), 5, "{who} via {var}: every row");
            assert!(
                proxy.tunnels.load(SeqCst) > before,
                "{who} via {var}: through CONNECT tunnels"
            );
            // Uploads go to the URLs the server hands out, under the
            // same name: through the tunnel too.
            let files = backend
                .store
                .file_paths(&RunKey::new("standin", "proxied", &id));
            for f in ["wandb-metadata.json", "requirements.txt"] {
                assert!(
                    files.iter().any(|p| p == f),
                    "{who} via {var}: {f} uploaded: {files:?}"
                );
            }
        }
    }
    assert_eq!(proxy.refused.load(SeqCst), 0);
}

#[test]
fn an_untrusted_certificate_fails_at_once_unless_checks_are_off() {
    let backend = https_standin(&["127.0.0.1"], None);
    let ours_py = install_ours();
    for (who, python) in [("ours", ours_py), ("theirs", reference_python())] {
        // No CA given: the certificate is refused, and no retry can change
        // that, so init fails with that reason, not a timeout after
        // minutes of retries.
        let id = format!("untrusted-{who}");
        let out = online_run_at(python, &id, &backend.base_url, &[]);
        assert!(!out.status.success(), "{who}: {}", text(&out));
        let said = text(&out).to_lowercase();
        assert!(
            said.contains("certificate") && !said.contains("timed out"),
            "{who}: the certificate is named as the reason: {said}"
        );
        assert_eq!(rows(&backend, &id), 0);
        // insecure_disable_ssl: no checks.
        let id = format!("insecure-{who}");
        let out = online_run_at(
            python,
            &id,
            &backend.base_url,
            &[("WANDB_INSECURE_DISABLE_SSL", "true".into())],
        );
        assert!(out.status.success(), "{who}: {}", text(&out));
        assert_eq!(rows(&backend, &id), 5, "{who}");
    }
}
