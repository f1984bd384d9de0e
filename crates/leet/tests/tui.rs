//! The terminal UI, driven by keys and checked frame by frame on
//! ratatui's `TestBackend` (no terminal), over logs written by
//! `wandb_leet::synthetic`.

use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use wandb_leet::synthetic::{self, Spec};
use wandb_leet::tui::app::{App, Mode};
use wandb_leet::tui::{Event, ui};

/// Longest a test waits for a loader.
const LIMIT: Duration = Duration::from_secs(30);

fn app(dir: &Path, run_file: Option<&Path>) -> (App, mpsc::Receiver<Event>) {
    let (tx, rx) = mpsc::sync_channel(64);
    let app = App::new(
        dir.to_path_buf(),
        run_file.map(Path::to_path_buf),
        (2, 2),
        tx,
    );
    (app, rx)
}

/// Waits until `ready` holds for the app, failing past [`LIMIT`].
fn wait(app: &mut App, what: &str, ready: impl Fn(&App) -> bool) {
    let until = Instant::now() + LIMIT;
    while !ready(app) {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        app.refresh();
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn screen(app: &App, width: u16, height: u16) -> String {
    let mut t = Terminal::new(TestBackend::new(width, height)).unwrap();
    t.draw(|f| ui::draw(f, app)).unwrap();
    let buf = t.backend().buffer();
    (0..buf.area.height)
        .map(|y| {
            (0..buf.area.width)
                .map(|x| buf[(x, y)].symbol())
                .collect::<String>()
                + "\n"
        })
        .collect()
}

fn key(app: &mut App, code: KeyCode) {
    app.on_key(KeyEvent::new(code, KeyModifiers::NONE));
}

fn typed(app: &mut App, text: &str) {
    for c in text.chars() {
        key(app, KeyCode::Char(c));
    }
}

fn three_runs(dir: &Path) {
    for (id, metrics) in [("aaa", 3), ("bbb", 5), ("ccc", 3)] {
        let mut spec = Spec::new(id, 200);
        spec.metrics = metrics;
        synthetic::write_run(dir, spec).unwrap();
    }
}

#[test]
fn the_workspace_lists_runs_and_charts_the_selected_one() {
    let dir = tempfile::tempdir().unwrap();
    three_runs(dir.path());
    let (mut app, _rx) = app(dir.path(), None);
    wait(&mut app, "the first run", App::caught_up);
    let s = screen(&app, 140, 40);
    assert!(s.contains("3 runs"), "{s}");
    assert!(s.contains("Runs (3)"), "{s}");
    for name in ["run-aaa", "run-bbb", "run-ccc"] {
        // Only the shown run is loaded (its name known); the others show ids.
        let id = &name[4..];
        assert!(s.contains(name) || s.contains(id), "{name}: {s}");
    }
    assert!(s.contains("Metrics (3)"), "{s}");
    for m in [" m0 ", " m1 ", " m2 "] {
        assert!(s.contains(m), "chart {m}: {s}");
    }
    assert!(
        s.contains('⣀')
            || s.contains('⠉')
            || s.chars().any(|c| ('\u{2801}'..='\u{28ff}').contains(&c)),
        "braille lines: {s}"
    );
    assert!(s.contains("Console"), "{s}");
    assert!(s.contains("step 190: loss"), "console tail: {s}");
    assert!(s.contains("System"), "{s}");
}

#[test]
fn pinned_runs_share_the_charts() {
    let dir = tempfile::tempdir().unwrap();
    three_runs(dir.path());
    let (mut app, _rx) = app(dir.path(), None);
    key(&mut app, KeyCode::Char(' '));
    key(&mut app, KeyCode::Down);
    wait(&mut app, "two runs", App::caught_up);
    assert_eq!(app.shown().len(), 2);
    let s = screen(&app, 140, 40);
    assert_eq!(s.matches('●').count(), 2, "two runs marked: {s}");
    // bbb has 5 metrics: the union of both runs' metrics is charted.
    assert!(s.contains("Metrics (5)"), "{s}");
    assert!(s.contains("1 pinned"), "{s}");
    // Unpinning leaves the one under the cursor.
    key(&mut app, KeyCode::Up);
    key(&mut app, KeyCode::Char(' '));
    assert_eq!(app.shown().len(), 1);
}

#[test]
fn filters_narrow_runs_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    three_runs(dir.path());
    let (mut app, _rx) = app(dir.path(), None);
    key(&mut app, KeyCode::Char('/'));
    typed(&mut app, "bb");
    let s = screen(&app, 140, 40);
    assert!(s.contains("filter runs (regex): bb"), "{s}");
    key(&mut app, KeyCode::Enter);
    wait(&mut app, "the filtered run", App::caught_up);
    let s = screen(&app, 140, 40);
    assert!(s.contains("Runs (1/3)"), "{s}");
    assert!(!s.contains("aaa") && !s.contains("ccc"), "{s}");

    key(&mut app, KeyCode::Char('f'));
    typed(&mut app, "m[34]");
    key(&mut app, KeyCode::Enter);
    let s = screen(&app, 140, 40);
    assert!(s.contains("Metrics (2)"), "{s}");
    assert!(
        s.contains(" m3 ") && s.contains(" m4 ") && !s.contains(" m0 "),
        "{s}"
    );
    // esc clears both filters.
    key(&mut app, KeyCode::Esc);
    let s = screen(&app, 140, 40);
    assert!(s.contains("Runs (3)"), "{s}");
}

#[test]
fn the_help_overlay_names_the_keys() {
    let dir = tempfile::tempdir().unwrap();
    three_runs(dir.path());
    let (mut app, _rx) = app(dir.path(), None);
    key(&mut app, KeyCode::Char('?'));
    let s = screen(&app, 140, 40);
    assert!(s.contains("Keys"), "{s}");
    for what in [
        "pin the run",
        "filter metrics by regex",
        "log scale on y",
        "quit",
    ] {
        assert!(s.contains(what), "{what}: {s}");
    }
    key(&mut app, KeyCode::Char('x'));
    assert!(!app.help, "any key closes the help");
    assert!(!app.quit);
}

#[test]
fn a_run_view_shows_overview_pages_and_axes() {
    let dir = tempfile::tempdir().unwrap();
    three_runs(dir.path());
    let (mut app, _rx) = app(dir.path(), None);
    key(&mut app, KeyCode::Down);
    key(&mut app, KeyCode::Enter);
    assert_eq!(app.mode, Mode::Run);
    wait(&mut app, "the run", App::caught_up);
    let s = screen(&app, 160, 50);
    assert!(s.contains("run-bbb (bbb) finished"), "{s}");
    assert!(s.contains("199 rows") || s.contains("200 rows"), "{s}");
    for what in [
        "Overview",
        "lr: 0.001",
        "model.layers: 12",
        "tags: synthetic",
        "Summary",
        "m4: ",
    ] {
        assert!(s.contains(what), "{what}: {s}");
    }
    assert!(s.contains("page 1/2"), "5 metrics on a 2x2 grid: {s}");
    key(&mut app, KeyCode::Char('n'));
    let s = screen(&app, 160, 50);
    assert!(s.contains("page 2/2") && s.contains(" m4 "), "{s}");
    key(&mut app, KeyCode::Char('l'));
    key(&mut app, KeyCode::Char('x'));
    key(&mut app, KeyCode::Char('+'));
    let s = screen(&app, 160, 50);
    assert!(s.contains("x: time · log y · zoom 2x"), "{s}");
    key(&mut app, KeyCode::Esc);
    assert_eq!(app.mode, Mode::Workspace);
    key(&mut app, KeyCode::Char('q'));
    assert!(app.quit);
}

#[test]
fn run_file_opens_the_run_view() {
    let dir = tempfile::tempdir().unwrap();
    three_runs(dir.path());
    let log = wandb_leet::workspace::list_runs(dir.path()).unwrap()[2]
        .log
        .clone();
    let (mut app, _rx) = app(dir.path(), Some(&log));
    assert_eq!(app.mode, Mode::Run);
    wait(&mut app, "the run", App::caught_up);
    let s = screen(&app, 140, 40);
    assert!(s.contains("run-aaa (aaa)"), "{s}");
}

#[test]
fn a_run_being_written_is_followed_and_new_runs_appear() {
    let dir = tempfile::tempdir().unwrap();
    let spec = Spec::new("live", 0);
    let mut writer = synthetic::Writer::create(dir.path(), spec).unwrap();
    writer.rows(10).unwrap();
    writer.flush().unwrap();
    let (mut app, rx) = app(dir.path(), None);
    wait(&mut app, "10 rows", |a| rows(a) == Some(10));
    let s = screen(&app, 140, 40);
    assert!(s.contains("running"), "{s}");

    writer.rows(5).unwrap();
    writer.flush().unwrap();
    let written = Instant::now();
    // The loader wakes the UI loop when rows arrive.
    let woke = rx.recv_timeout(LIMIT);
    assert!(matches!(woke, Ok(Event::Data)), "{woke:?}");
    wait(&mut app, "15 rows", |a| rows(a) == Some(15));
    assert!(
        written.elapsed() < Duration::from_secs(1),
        "{:?}",
        written.elapsed()
    );

    synthetic::write_run(dir.path(), Spec::new("newer", 5)).unwrap();
    assert!(app.refresh(), "the new run is listed");
    assert_eq!(app.runs.len(), 2);
    let s = screen(&app, 140, 40);
    assert!(s.contains("2 runs"), "{s}");
    writer.finish(Some(0)).unwrap();
}

fn rows(app: &App) -> Option<u64> {
    let path = app.focused()?;
    Some(app.loader(&path)?.log().data().rows)
}
