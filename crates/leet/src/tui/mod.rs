//! The terminal UI: `leet run`.
//!
//! Three sources of events feed one loop: keys (a thread blocked on the
//! terminal), log loaders (a thread per shown run, waking the loop when
//! rows arrive) and a one-second tick (new runs in the directory). The loop
//! redraws only after something changed, so an idle UI costs nothing but
//! the loaders' look at their logs four times a second.
//!
//! * [`app`]: the state and what keys do to it.
//! * [`ui`], [`charts`], [`help`]: drawing it.
//! * [`loader`]: reading a run's log off the UI thread.

pub mod app;
pub mod charts;
pub mod help;
pub mod loader;
pub mod ui;

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

use ratatui::crossterm::event::{self, Event as TermEvent};

use crate::config;

/// What `leet run` was asked to show.
#[derive(Debug, Clone)]
pub struct Options {
    pub wandb_dir: PathBuf,
    /// Open this run's view at once.
    pub run_file: Option<PathBuf>,
}

/// What wakes the UI loop.
#[derive(Debug)]
pub enum Event {
    Input(TermEvent),
    /// A loader read more of a log.
    Data,
    /// A second passed: look for new runs.
    Tick,
}

#[derive(Debug, thiserror::Error)]
pub enum TuiError {
    #[error("leet needs a terminal: stdout is not one (use `leet inspect` to print a run)")]
    NotATerminal,
    #[error("{0} is not a wandb directory (no such directory)")]
    NoDirectory(PathBuf),
    #[error("terminal: {0}")]
    Terminal(#[from] std::io::Error),
}

/// Runs the UI until the user quits.
pub fn run(opts: Options) -> Result<(), TuiError> {
    if !std::io::stdout().is_terminal() {
        return Err(TuiError::NotATerminal);
    }
    if opts.run_file.is_none() && !opts.wandb_dir.is_dir() {
        return Err(TuiError::NoDirectory(opts.wandb_dir));
    }
    let settings = config::load();
    let (tx, rx) = mpsc::sync_channel(64);
    let input = tx.clone();
    std::thread::Builder::new()
        .name("leet-input".into())
        .spawn(move || {
            // Blocks on the terminal; ends with the process.
            while let Ok(ev) = event::read() {
                if input.send(Event::Input(ev)).is_err() {
                    break;
                }
            }
        })?;
    let tick = tx.clone();
    std::thread::Builder::new()
        .name("leet-tick".into())
        .spawn(move || {
            while tick.send(Event::Tick).is_ok() {
                std::thread::sleep(Duration::from_secs(1));
            }
        })?;
    let wandb_dir = std::path::absolute(&opts.wandb_dir).unwrap_or(opts.wandb_dir);
    let mut app = app::App::new(wandb_dir, opts.run_file, settings.metrics_grid, tx);
    app.show_console = settings.console_logs_visible;
    app.show_system = settings.system_visible;
    app.show_overview = settings.overview_visible;

    let mut terminal = ratatui::try_init()?;
    let result = event_loop(&mut terminal, &mut app, &rx);
    ratatui::restore();
    result
}

fn event_loop(
    terminal: &mut ratatui::DefaultTerminal,
    app: &mut app::App,
    rx: &mpsc::Receiver<Event>,
) -> Result<(), TuiError> {
    let mut dirty = true;
    loop {
        if dirty {
            terminal.draw(|frame| ui::draw(frame, app))?;
            dirty = false;
        }
        let Ok(first) = rx.recv() else {
            return Ok(());
        };
        // Everything already queued is handled before the next frame.
        for ev in std::iter::once(first).chain(rx.try_iter()) {
            dirty |= handle(app, ev);
        }
        if app.quit {
            return Ok(());
        }
    }
}

/// Applies an event; returns whether the screen may have changed.
fn handle(app: &mut app::App, ev: Event) -> bool {
    match ev {
        Event::Input(TermEvent::Key(key)) => {
            app.on_key(key);
            true
        }
        Event::Input(TermEvent::Resize(..)) => true,
        Event::Input(_) => false,
        Event::Data => true,
        Event::Tick => app.refresh(),
    }
}
