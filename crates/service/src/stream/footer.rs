//! The footer the service prints itself when it finishes a run its client
//! did not finish (a teardown with the run still open, such as a script
//! interrupted inside `wandb.init()`): where the run is and where its logs
//! are, in wandb-core's words and colours, once the run is sent. The
//! service's stdout is the user's terminal (the SDK launched it). The SDK
//! prints its own footer for the runs it finishes.

use std::io::Write;
use std::path::{Component, Path, PathBuf};

use crate::settings::RunSettings;

const PREFIX: &str = "\x1b[1;34mwandb\x1b[0m: ";

/// Where an online run lives on the server (for its URL).
#[derive(Debug, Clone)]
pub(crate) struct RunPlace {
    pub entity: String,
    pub project: String,
    pub run_id: String,
}

/// A footer to print once the run is sent: the service finished a run its
/// client left open (`place`: where it lives online).
#[derive(Debug, Clone)]
pub(crate) struct Due {
    pub place: Option<RunPlace>,
}

/// Prints the footer unless `silent`.
pub(crate) fn print(settings: &RunSettings, place: Option<&RunPlace>) {
    if settings.silent {
        return;
    }
    let _ = std::io::stdout()
        .lock()
        .write_all(text(settings, place, std::env::current_dir().ok().as_deref()).as_bytes());
}

fn text(settings: &RunSettings, place: Option<&RunPlace>, cwd: Option<&Path>) -> String {
    let mut out = format!("{PREFIX}\n");
    if settings.offline {
        out.push_str(&format!(
            "{PREFIX}You can sync this run to the cloud by running:\n\
             {PREFIX}\x1b[1mwandb sync {}\x1b[0m\n",
            settings.sync_dir.display()
        ));
    } else if let Some(place) = place {
        let app_url = settings
            .raw
            .app_url
            .as_deref()
            .unwrap_or("https://wandb.ai");
        let name = settings.raw.run_name.as_deref().unwrap_or_default();
        out.push_str(&format!(
            "{PREFIX}🚀 View run \x1b[33m{name}\x1b[0m at: \x1b[34m{}/{}/{}/runs/{}\x1b[0m\n",
            app_url.trim_end_matches('/'),
            place.entity,
            place.project,
            place.run_id
        ));
    }
    if let (Some(dir), Some(cwd)) = (&settings.log_dir, cwd) {
        out.push_str(&format!(
            "{PREFIX}Find logs at: \x1b[1;35m{}\x1b[0m\n",
            relative(dir, cwd).display()
        ));
    }
    out
}

/// `path` relative to `base` (both absolute), as Go's `filepath.Rel` gives
/// it (`..` where needed); `path` itself when either is relative.
fn relative(path: &Path, base: &Path) -> PathBuf {
    if !path.is_absolute() || !base.is_absolute() {
        return path.to_path_buf();
    }
    let (p, b): (Vec<Component>, Vec<Component>) =
        (path.components().collect(), base.components().collect());
    let common = p.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut out = PathBuf::new();
    for _ in common..b.len() {
        out.push("..");
    }
    for c in &p[common..] {
        out.push(c);
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_relative_as_go_gives_them() {
        let r = |p: &str, b: &str| relative(Path::new(p), Path::new(b)).display().to_string();
        assert_eq!(r("/w/wandb/run-1/logs", "/w"), "wandb/run-1/logs");
        assert_eq!(r("/w/wandb/run-1/logs", "/w/x/y"), "../../wandb/run-1/logs");
        assert_eq!(r("/w", "/w"), ".");
        assert_eq!(r("rel/logs", "/w"), "rel/logs");
    }
}
