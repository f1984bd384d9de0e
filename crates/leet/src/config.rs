//! LEET's settings file, `wandb-leet.json`, and `leet config`.
//!
//! The file is the one W&B's LEET uses (in `$WANDB_CONFIG_DIR`, else
//! `~/.config/wandb/`), so both read the same grid sizes and panes. Only
//! the keys this LEET knows are read or written; the others are kept as
//! they are, so saving here never loses W&B's settings.

use std::io::IsTerminal as _;
use std::path::PathBuf;

use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style, Stylize as _};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, List, ListItem, ListState, Paragraph};
use serde_json::{Map, Value, json};

const FILE_NAME: &str = "wandb-leet.json";

/// The settings this LEET uses.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Metric charts per page: (rows, columns), each 1 to 9.
    pub metrics_grid: (u16, u16),
    pub console_logs_visible: bool,
    /// System metrics pane.
    pub system_visible: bool,
    /// Overview sidebar of a run.
    pub overview_visible: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            metrics_grid: (2, 3),
            console_logs_visible: true,
            system_visible: true,
            overview_visible: true,
        }
    }
}

/// Where the file is (it need not exist).
pub fn path() -> PathBuf {
    if let Some(dir) = std::env::var_os("WANDB_CONFIG_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join(FILE_NAME);
    }
    if let Some(home) = std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(home).join(".config/wandb").join(FILE_NAME);
    }
    std::env::temp_dir().join(FILE_NAME)
}

fn read_object() -> Map<String, Value> {
    std::fs::read_to_string(path())
        .ok()
        .and_then(|text| serde_json::from_str::<Value>(&text).ok())
        .and_then(|v| match v {
            Value::Object(m) => Some(m),
            _ => None,
        })
        .unwrap_or_default()
}

fn grid(obj: &Map<String, Value>, key: &str, default: (u16, u16)) -> (u16, u16) {
    let dim = |name: &str, default: u16| {
        obj.get(key)
            .and_then(|g| g.get(name))
            .and_then(Value::as_u64)
            .map_or(default, |n| n.clamp(1, 9) as u16)
    };
    (dim("rows", default.0), dim("cols", default.1))
}

fn flag(obj: &Map<String, Value>, key: &str, default: bool) -> bool {
    obj.get(key).and_then(Value::as_bool).unwrap_or(default)
}

fn from_object(obj: &Map<String, Value>) -> Settings {
    let d = Settings::default();
    Settings {
        metrics_grid: grid(obj, "metrics_grid", d.metrics_grid),
        console_logs_visible: flag(obj, "console_logs_visible", d.console_logs_visible),
        system_visible: flag(obj, "right_sidebar_visible", d.system_visible),
        overview_visible: flag(obj, "left_sidebar_visible", d.overview_visible),
    }
}

/// The settings (defaults where the file is missing, unreadable, or
/// silent).
pub fn load() -> Settings {
    from_object(&read_object())
}

/// Writes `settings` into the file, keeping every other key it has.
pub fn save(settings: &Settings) -> std::io::Result<PathBuf> {
    let mut obj = read_object();
    obj.insert(
        "metrics_grid".into(),
        json!({"rows": settings.metrics_grid.0, "cols": settings.metrics_grid.1}),
    );
    obj.insert(
        "console_logs_visible".into(),
        settings.console_logs_visible.into(),
    );
    obj.insert(
        "right_sidebar_visible".into(),
        settings.system_visible.into(),
    );
    obj.insert(
        "left_sidebar_visible".into(),
        settings.overview_visible.into(),
    );
    let path = path();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let text = serde_json::to_string_pretty(&Value::Object(obj)).map_err(std::io::Error::other)?;
    wandb_store::write_atomically(&path, text.as_bytes())?;
    Ok(path)
}

/// Debug logs (`--log-level -4` or lower) go to `wandb-leet.debug.log`
/// beside the settings file; a TUI cannot log to its own screen.
pub fn init_logging(level: i32) -> std::io::Result<()> {
    if level > -4 {
        return Ok(());
    }
    let log = path().with_file_name("wandb-leet.debug.log");
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)?;
    let _ = tracing_subscriber::fmt()
        .with_writer(std::sync::Mutex::new(file))
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .try_init();
    Ok(())
}

/// One editable line of `leet config`.
#[derive(Clone, Copy)]
enum Field {
    MetricsRows,
    MetricsCols,
    Console,
    System,
    Overview,
}

const FIELDS: [Field; 5] = [
    Field::MetricsRows,
    Field::MetricsCols,
    Field::Console,
    Field::System,
    Field::Overview,
];

impl Field {
    fn label(self) -> &'static str {
        match self {
            Field::MetricsRows => "Metrics grid rows",
            Field::MetricsCols => "Metrics grid columns",
            Field::Console => "Console pane",
            Field::System => "System metrics pane",
            Field::Overview => "Run overview sidebar",
        }
    }

    fn value(self, s: &Settings) -> String {
        let on = |b: bool| if b { "shown" } else { "hidden" }.to_string();
        match self {
            Field::MetricsRows => s.metrics_grid.0.to_string(),
            Field::MetricsCols => s.metrics_grid.1.to_string(),
            Field::Console => on(s.console_logs_visible),
            Field::System => on(s.system_visible),
            Field::Overview => on(s.overview_visible),
        }
    }

    /// Changes the value one notch (`up`: more, or on).
    fn change(self, s: &mut Settings, up: bool) {
        let step = |n: u16| {
            if up {
                (n + 1).min(9)
            } else {
                n.saturating_sub(1).max(1)
            }
        };
        match self {
            Field::MetricsRows => s.metrics_grid.0 = step(s.metrics_grid.0),
            Field::MetricsCols => s.metrics_grid.1 = step(s.metrics_grid.1),
            Field::Console => s.console_logs_visible = !s.console_logs_visible,
            Field::System => s.system_visible = !s.system_visible,
            Field::Overview => s.overview_visible = !s.overview_visible,
        }
    }
}

/// The editor's state.
pub struct Editor {
    pub settings: Settings,
    pub selected: usize,
    pub saved: Option<String>,
    pub quit: bool,
}

impl Editor {
    pub fn new(settings: Settings) -> Self {
        Self {
            settings,
            selected: 0,
            saved: None,
            quit: false,
        }
    }

    pub fn on_key(&mut self, code: KeyCode) {
        let field = FIELDS[self.selected];
        match code {
            KeyCode::Up | KeyCode::Char('k') => self.selected = self.selected.saturating_sub(1),
            KeyCode::Down | KeyCode::Char('j') => {
                self.selected = (self.selected + 1).min(FIELDS.len() - 1)
            }
            KeyCode::Right | KeyCode::Char('l') | KeyCode::Char('+') | KeyCode::Char(' ') => {
                field.change(&mut self.settings, true)
            }
            KeyCode::Left | KeyCode::Char('h') | KeyCode::Char('-') => {
                field.change(&mut self.settings, false)
            }
            KeyCode::Char('s') | KeyCode::Enter => {
                self.saved = Some(match save(&self.settings) {
                    Ok(p) => format!("saved to {}", p.display()),
                    Err(e) => format!("cannot save {}: {e}", path().display()),
                })
            }
            KeyCode::Char('q') | KeyCode::Esc => self.quit = true,
            _ => {}
        }
    }

    pub fn draw(&self, frame: &mut ratatui::Frame<'_>) {
        let [title, list, status] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Min(3),
            Constraint::Length(1),
        ])
        .areas(frame.area());
        frame.render_widget(
            Paragraph::new(format!(" LEET settings · {}", path().display())).bold(),
            title,
        );
        let items: Vec<ListItem<'_>> = FIELDS
            .iter()
            .map(|f| {
                ListItem::new(Line::from(vec![
                    Span::raw(format!(" {:<24}", f.label())),
                    Span::raw(f.value(&self.settings)).fg(Color::Yellow),
                ]))
            })
            .collect();
        let mut state = ListState::default().with_selected(Some(self.selected));
        frame.render_stateful_widget(
            List::new(items)
                .block(Block::default().borders(Borders::ALL))
                .highlight_style(Style::default().add_modifier(Modifier::REVERSED)),
            list,
            &mut state,
        );
        let hint = self
            .saved
            .clone()
            .unwrap_or_else(|| " ↑↓: choose  ←→: change  s/enter: save  q/esc: quit".to_string());
        frame.render_widget(Paragraph::new(hint).fg(Color::DarkGray), status);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("terminal: {0}")]
    Terminal(#[from] std::io::Error),
}

/// `leet config`: edits the settings in a terminal; elsewhere prints the
/// file's path and the settings as JSON.
pub fn run() -> Result<(), ConfigError> {
    let settings = load();
    if !std::io::stdout().is_terminal() {
        let s = &settings;
        println!("{}", path().display());
        println!(
            "{}",
            json!({
                "metrics_grid": {"rows": s.metrics_grid.0, "cols": s.metrics_grid.1},
                "console_logs_visible": s.console_logs_visible,
                "right_sidebar_visible": s.system_visible,
                "left_sidebar_visible": s.overview_visible,
            })
        );
        return Ok(());
    }
    let mut editor = Editor::new(settings);
    let mut terminal = ratatui::try_init()?;
    let result = (|| -> std::io::Result<()> {
        while !editor.quit {
            terminal.draw(|f| editor.draw(f))?;
            if let Event::Key(key) = event::read()?
                && key.kind != KeyEventKind::Release
            {
                editor.on_key(key.code);
            }
        }
        Ok(())
    })();
    ratatui::restore();
    Ok(result?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_survive_and_bad_values_fall_back() {
        let obj: Map<String, Value> = serde_json::from_str(
            r#"{"metrics_grid":{"rows":40,"cols":2},"console_logs_visible":"yes","startup_mode":"x"}"#,
        )
        .unwrap();
        let s = from_object(&obj);
        assert_eq!(s.metrics_grid, (9, 2), "rows are clamped to 9");
        assert!(s.console_logs_visible, "a non-bool keeps the default");
    }

    #[test]
    fn the_editor_changes_values_within_bounds() {
        let mut e = Editor::new(Settings::default());
        for _ in 0..20 {
            e.on_key(KeyCode::Right);
        }
        assert_eq!(e.settings.metrics_grid.0, 9);
        e.on_key(KeyCode::Down);
        for _ in 0..20 {
            e.on_key(KeyCode::Left);
        }
        assert_eq!(e.settings.metrics_grid.1, 1);
        e.on_key(KeyCode::Down);
        e.on_key(KeyCode::Char(' '));
        assert!(!e.settings.console_logs_visible);
        e.on_key(KeyCode::Char('q'));
        assert!(e.quit);
    }
}
