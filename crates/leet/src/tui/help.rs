//! The help overlay (`?`): every key, so none has to be guessed.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Stylize as _};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};

/// Keys and what they do, by where they work.
pub const KEYS: &[(&str, &[(&str, &str)])] = &[
    (
        "Anywhere",
        &[
            ("?  F1", "this help (any key closes it)"),
            ("q  ctrl-c", "quit"),
            ("f", "filter metrics by regex (enter keeps, esc clears)"),
            ("n  p  pgdn  pgup", "next / previous page of charts"),
            ("l", "log scale on y"),
            ("x", "x axis: step or time since start"),
            ("+  -  0", "zoom in / out on the newest part, reset"),
            ("←  →  h", "pan back / forward when zoomed"),
            ("o  s  c", "show or hide overview, system metrics, console"),
        ],
    ),
    (
        "Runs",
        &[
            ("↑ ↓  j k  g G", "move between runs"),
            ("space", "pin the run: pinned runs share the charts"),
            ("enter", "open the run"),
            ("/", "filter runs by name or regex"),
            ("esc", "clear the filters"),
        ],
    ),
    ("A run", &[("esc  backspace", "back to the runs")]),
];

fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let [_, mid, _] = Layout::vertical([
        Constraint::Fill(1),
        Constraint::Length(height.min(area.height)),
        Constraint::Fill(1),
    ])
    .areas(area);
    let [_, mid, _] = Layout::horizontal([
        Constraint::Fill(1),
        Constraint::Length(width.min(area.width)),
        Constraint::Fill(1),
    ])
    .areas(mid);
    mid
}

pub fn draw(frame: &mut Frame<'_>, area: Rect) {
    let mut lines = Vec::new();
    for (section, keys) in KEYS {
        lines.push(Line::from(*section).bold().fg(Color::Cyan));
        for (key, what) in *keys {
            lines.push(Line::from(vec![
                Span::raw(format!("  {key:<18}")).fg(Color::Yellow),
                Span::raw(*what),
            ]));
        }
        lines.push(Line::from(""));
    }
    let height = lines.len() as u16 + 2;
    let rect = centered(area, 72, height);
    super::ui::clear(frame, rect);
    frame.render_widget(
        Paragraph::new(lines).block(Block::default().borders(Borders::ALL).title(" Keys ")),
        rect,
    );
}
