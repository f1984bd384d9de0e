//! What the UI shows, and what keys do to it.
//!
//! All state is here, changed only by [`App::on_key`] and
//! [`App::refresh`]; drawing (`ui`) reads it. So a test drives the UI with
//! keys and checks frames on ratatui's `TestBackend`, no terminal needed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::SyncSender;

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use regex::{Regex, RegexBuilder};

use super::Event;
use super::loader::Loader;
use crate::runlog::LoadError;
use crate::workspace::{self, RunEntry};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The runs of the directory; charts of the selected and pinned runs.
    Workspace,
    /// One run: overview, charts, system metrics, console.
    Run,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XAxis {
    Step,
    /// Seconds since the run started.
    Time,
}

/// A line of text being typed (a filter).
#[derive(Debug, Clone, Default)]
pub struct Input {
    pub text: String,
    pub editing: bool,
}

impl Input {
    /// The filter as a case-insensitive regex; text that is not one is
    /// matched literally.
    pub fn regex(&self) -> Option<Regex> {
        if self.text.is_empty() {
            return None;
        }
        RegexBuilder::new(&self.text)
            .case_insensitive(true)
            .build()
            .or_else(|_| {
                RegexBuilder::new(&regex::escape(&self.text))
                    .case_insensitive(true)
                    .build()
            })
            .ok()
    }
}

/// Which filter a key types into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Editing {
    Runs,
    Metrics,
}

pub struct App {
    pub wandb_dir: PathBuf,
    pub mode: Mode,
    /// Every run of the directory, newest first.
    pub runs: Vec<RunEntry>,
    /// Index into [`App::visible_runs`].
    pub cursor: usize,
    /// Runs overlaid in the workspace charts besides the one under the
    /// cursor, in the order pinned.
    pub pinned: Vec<PathBuf>,
    /// The run of the run view.
    pub opened: Option<PathBuf>,
    pub run_filter: Input,
    pub metric_filter: Input,
    pub editing: Option<Editing>,
    pub page: usize,
    pub log_y: bool,
    pub x_axis: XAxis,
    /// Zoom level: the charts show the last 1/2^zoom of the x range…
    pub zoom: u32,
    /// …shifted back by this many of those windows.
    pub pan: u32,
    pub show_overview: bool,
    pub show_system: bool,
    pub show_console: bool,
    pub help: bool,
    pub quit: bool,
    /// Chart grid (rows, columns).
    pub grid: (u16, u16),
    /// A message for the status line (an error opening a run).
    pub status: Option<String>,
    loaders: HashMap<PathBuf, Loader>,
    wake: SyncSender<Event>,
}

impl App {
    pub fn new(
        wandb_dir: PathBuf,
        run_file: Option<PathBuf>,
        grid: (u16, u16),
        wake: SyncSender<Event>,
    ) -> Self {
        let mut app = Self {
            wandb_dir,
            mode: Mode::Workspace,
            runs: Vec::new(),
            cursor: 0,
            pinned: Vec::new(),
            opened: None,
            run_filter: Input::default(),
            metric_filter: Input::default(),
            editing: None,
            page: 0,
            log_y: false,
            x_axis: XAxis::Step,
            zoom: 0,
            pan: 0,
            show_overview: true,
            show_system: true,
            show_console: true,
            help: false,
            quit: false,
            grid,
            status: None,
            loaders: HashMap::new(),
            wake,
        };
        app.refresh_runs();
        if let Some(file) = run_file {
            let file = std::path::absolute(&file).unwrap_or(file);
            if let Some(i) = app.visible_runs().iter().position(|r| same(&r.log, &file)) {
                app.cursor = i;
            }
            app.open(file);
        }
        app.sync_loaders();
        app
    }

    /// Runs passing the run filter.
    pub fn visible_runs(&self) -> Vec<&RunEntry> {
        let re = self.run_filter.regex();
        self.runs
            .iter()
            .filter(|r| match &re {
                None => true,
                Some(re) => {
                    re.is_match(&r.dir_name)
                        || self.name_of(&r.log).is_some_and(|n| re.is_match(&n))
                }
            })
            .collect()
    }

    fn name_of(&self, log: &Path) -> Option<String> {
        self.loaders
            .get(log)
            .map(|l| l.log().data().label().to_string())
    }

    /// The run under the cursor.
    pub fn current(&self) -> Option<PathBuf> {
        self.visible_runs().get(self.cursor).map(|r| r.log.clone())
    }

    /// The runs whose charts are drawn, in colour order.
    pub fn shown(&self) -> Vec<PathBuf> {
        match self.mode {
            Mode::Run => self.opened.iter().cloned().collect(),
            Mode::Workspace => {
                let mut shown = self.pinned.clone();
                if let Some(cur) = self.current()
                    && !shown.contains(&cur)
                {
                    shown.push(cur);
                }
                shown
            }
        }
    }

    /// The run the overview, system metrics and console are of.
    pub fn focused(&self) -> Option<PathBuf> {
        match self.mode {
            Mode::Run => self.opened.clone(),
            Mode::Workspace => self.current(),
        }
    }

    pub fn loader(&self, log: &Path) -> Option<&Loader> {
        self.loaders.get(log)
    }

    /// Whether every shown run has been read up to its end.
    pub fn caught_up(&self) -> bool {
        self.shown()
            .iter()
            .all(|p| self.loaders.get(p).is_none_or(Loader::caught_up))
    }

    /// Lists the directory again (new runs appear as they start); called
    /// every second. Returns whether anything changed.
    pub fn refresh(&mut self) -> bool {
        let before: Vec<PathBuf> = self.runs.iter().map(|r| r.log.clone()).collect();
        self.refresh_runs();
        let changed = before.len() != self.runs.len()
            || before.iter().zip(&self.runs).any(|(a, b)| *a != b.log);
        if changed {
            self.sync_loaders();
        }
        changed
    }

    fn refresh_runs(&mut self) {
        let current = self.current();
        match workspace::list_runs(&self.wandb_dir) {
            Ok(runs) => self.runs = runs,
            Err(e) if self.runs.is_empty() && self.opened.is_none() => {
                self.status = Some(format!("cannot list {}: {e}", self.wandb_dir.display()));
            }
            Err(_) => {}
        }
        // The cursor stays on its run when others appear above it.
        if let Some(cur) = current
            && let Some(i) = self.visible_runs().iter().position(|r| r.log == cur)
        {
            self.cursor = i;
        }
        self.cursor = self.cursor.min(self.visible_runs().len().saturating_sub(1));
    }

    fn open(&mut self, log: PathBuf) {
        self.opened = Some(log);
        self.mode = Mode::Run;
        self.page = 0;
    }

    /// Starts loaders for the runs on screen and stops the others, so
    /// memory is that of the runs shown.
    fn sync_loaders(&mut self) {
        let mut wanted = self.shown();
        if let Some(f) = self.focused()
            && !wanted.contains(&f)
        {
            wanted.push(f);
        }
        self.loaders.retain(|p, _| wanted.contains(p));
        for path in wanted {
            if self.loaders.contains_key(&path) {
                continue;
            }
            match Loader::start(&path, self.wake.clone()) {
                Ok(loader) => {
                    self.loaders.insert(path, loader);
                }
                Err(LoadError::Read { path, source }) => {
                    self.status = Some(format!("cannot read {}: {source}", path.display()));
                }
            }
        }
    }

    pub fn on_key(&mut self, key: KeyEvent) {
        if key.kind == KeyEventKind::Release {
            return;
        }
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            self.quit = true;
            return;
        }
        if let Some(which) = self.editing {
            self.edit(which, key);
            return;
        }
        if self.help {
            // Any key closes the help; q still quits.
            self.help = false;
            if key.code == KeyCode::Char('q') {
                self.quit = true;
            }
            return;
        }
        let pages = self.page_count();
        match key.code {
            KeyCode::Char('q') => self.quit = true,
            KeyCode::Char('?') | KeyCode::F(1) => self.help = true,
            KeyCode::Esc | KeyCode::Backspace if self.mode == Mode::Run => {
                self.mode = Mode::Workspace;
                self.page = 0;
            }
            KeyCode::Esc => {
                self.run_filter.text.clear();
                self.metric_filter.text.clear();
                self.status = None;
            }
            KeyCode::Up | KeyCode::Char('k') if self.mode == Mode::Workspace => {
                self.cursor = self.cursor.saturating_sub(1)
            }
            KeyCode::Down | KeyCode::Char('j') if self.mode == Mode::Workspace => {
                self.cursor = (self.cursor + 1).min(self.visible_runs().len().saturating_sub(1))
            }
            KeyCode::Home | KeyCode::Char('g') if self.mode == Mode::Workspace => self.cursor = 0,
            KeyCode::End | KeyCode::Char('G') if self.mode == Mode::Workspace => {
                self.cursor = self.visible_runs().len().saturating_sub(1)
            }
            KeyCode::Char(' ') if self.mode == Mode::Workspace => {
                if let Some(cur) = self.current() {
                    match self.pinned.iter().position(|p| *p == cur) {
                        Some(i) => {
                            self.pinned.remove(i);
                        }
                        None => self.pinned.push(cur),
                    }
                }
            }
            KeyCode::Enter if self.mode == Mode::Workspace => {
                if let Some(cur) = self.current() {
                    self.open(cur);
                }
            }
            KeyCode::Char('/') if self.mode == Mode::Workspace => self.start_edit(Editing::Runs),
            KeyCode::Char('f') | KeyCode::Char('/') => self.start_edit(Editing::Metrics),
            KeyCode::Char('n') | KeyCode::PageDown => self.page = (self.page + 1) % pages.max(1),
            KeyCode::Char('p') | KeyCode::PageUp => {
                self.page = (self.page + pages.max(1) - 1) % pages.max(1)
            }
            KeyCode::Char('l') => self.log_y = !self.log_y,
            KeyCode::Char('x') => {
                self.x_axis = match self.x_axis {
                    XAxis::Step => XAxis::Time,
                    XAxis::Time => XAxis::Step,
                }
            }
            KeyCode::Char('+') | KeyCode::Char('=') => self.zoom = (self.zoom + 1).min(16),
            KeyCode::Char('-') => {
                self.zoom = self.zoom.saturating_sub(1);
                self.pan = self.pan.min((1u32 << self.zoom) - 1);
            }
            KeyCode::Char('0') => {
                self.zoom = 0;
                self.pan = 0;
            }
            KeyCode::Left | KeyCode::Char('h') => {
                self.pan = (self.pan + 1).min((1u32 << self.zoom) - 1)
            }
            KeyCode::Right => self.pan = self.pan.saturating_sub(1),
            KeyCode::Char('o') => self.show_overview = !self.show_overview,
            KeyCode::Char('s') => self.show_system = !self.show_system,
            KeyCode::Char('c') => self.show_console = !self.show_console,
            _ => return,
        }
        self.sync_loaders();
    }

    fn start_edit(&mut self, which: Editing) {
        self.editing = Some(which);
        self.filter_mut(which).editing = true;
    }

    fn filter_mut(&mut self, which: Editing) -> &mut Input {
        match which {
            Editing::Runs => &mut self.run_filter,
            Editing::Metrics => &mut self.metric_filter,
        }
    }

    fn edit(&mut self, which: Editing, key: KeyEvent) {
        let current = self.current();
        let input = self.filter_mut(which);
        match key.code {
            KeyCode::Enter => {
                input.editing = false;
                self.editing = None;
            }
            KeyCode::Esc => {
                input.text.clear();
                input.editing = false;
                self.editing = None;
            }
            KeyCode::Backspace => {
                input.text.pop();
            }
            KeyCode::Char(c) => input.text.push(c),
            _ => {}
        }
        self.page = 0;
        if which == Editing::Runs {
            // Keep the cursor on its run if it still passes.
            let runs = self.visible_runs();
            self.cursor = current
                .and_then(|c| runs.iter().position(|r| r.log == c))
                .unwrap_or(0);
        }
        self.sync_loaders();
    }

    /// The metrics of the shown runs that pass the filter, by name (so a
    /// metric keeps its place on the pages whichever runs are shown).
    pub fn metric_names(&self) -> Vec<String> {
        let re = self.metric_filter.regex();
        let mut names = std::collections::BTreeSet::new();
        for path in self.shown() {
            if let Some(l) = self.loaders.get(&path) {
                for name in l.log().data().metrics.keys() {
                    if re.as_ref().is_none_or(|re| re.is_match(name)) && !names.contains(name) {
                        names.insert(name.clone());
                    }
                }
            }
        }
        names.into_iter().collect()
    }

    pub fn per_page(&self) -> usize {
        usize::from(self.grid.0) * usize::from(self.grid.1)
    }

    pub fn page_count(&self) -> usize {
        self.metric_names().len().div_ceil(self.per_page().max(1))
    }
}

fn same(a: &Path, b: &Path) -> bool {
    a == b
        || a.canonicalize()
            .ok()
            .zip(b.canonicalize().ok())
            .is_some_and(|(a, b)| a == b)
}
