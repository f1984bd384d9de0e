//! Drawing the app: one function per part of the screen.
//!
//! ```text
//! workspace                          run
//! ┌ header ───────────────────┐     ┌ header (run, state, step) ┐
//! │ runs   │ charts (grid)    │     │ overview │ charts (grid)  │
//! │        │                  │     │          ├ system metrics ┤
//! │        │                  │     │          ├ console        ┤
//! └ keys / filter / message ──┘     └ keys / filter / message ──┘
//! ```

use std::path::PathBuf;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize as _};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, List, ListItem, ListState, Paragraph, Wrap};

use super::app::{App, Editing, Mode, XAxis};
use super::charts::{self, Trace, View};
use super::help;
use crate::runlog::{RunData, RunState, flatten};

pub fn draw(frame: &mut Frame<'_>, app: &App) {
    let [header, body, status] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    draw_header(frame, header, app);
    match app.mode {
        Mode::Workspace => draw_workspace(frame, body, app),
        Mode::Run => draw_run(frame, body, app),
    }
    draw_status(frame, status, app);
    if app.help {
        help::draw(frame, frame.area());
    }
}

fn state_style(state: RunState) -> Style {
    match state {
        RunState::Running => Style::default().fg(Color::Green),
        RunState::Finished { .. } => Style::default().fg(Color::Blue),
        RunState::Failed { .. } => Style::default().fg(Color::Red),
    }
}

fn draw_header(frame: &mut Frame<'_>, area: Rect, app: &App) {
    let mut spans = vec![Span::from(" LEET ").reversed().bold(), Span::raw(" ")];
    match app.mode {
        Mode::Workspace => {
            spans.push(Span::raw(format!(
                "{} · {} runs",
                app.wandb_dir.display(),
                app.runs.len()
            )));
            if !app.pinned.is_empty() {
                spans.push(Span::raw(format!(" · {} pinned", app.pinned.len())));
            }
        }
        Mode::Run => {
            if let Some(loader) = app.opened.as_ref().and_then(|p| app.loader(p)) {
                let log = loader.log();
                let run = log.data();
                spans.push(Span::raw(format!("{} ", run.label())).bold());
                spans.push(Span::raw(format!("({}) ", run.id)));
                spans.push(Span::styled(run.state.name(), state_style(run.state)));
                if let Some(step) = run.step {
                    spans.push(Span::raw(format!(" · step {step}")));
                }
                spans.push(Span::raw(format!(" · {} rows", run.rows)));
            }
        }
    }
    if !app.caught_up() {
        spans.push(Span::raw(" · loading…").fg(Color::Yellow));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn draw_status(frame: &mut Frame<'_>, area: Rect, app: &App) {
    let line = if let Some(which) = app.editing {
        let (label, input) = match which {
            Editing::Runs => ("filter runs", &app.run_filter),
            Editing::Metrics => ("filter metrics", &app.metric_filter),
        };
        Line::from(vec![
            Span::raw(format!(" {label} (regex): ")).fg(Color::Yellow),
            Span::raw(input.text.clone()),
            Span::raw("▏"),
        ])
    } else if let Some(msg) = &app.status {
        Line::from(Span::raw(format!(" {msg}")).fg(Color::Red))
    } else {
        let mut hints = String::from(" ?: help  q: quit  ");
        hints.push_str(match app.mode {
            Mode::Workspace => "↑↓: runs  space: pin  enter: open  /: filter runs  ",
            Mode::Run => "esc: back  ",
        });
        hints.push_str("f: filter metrics  n/p: page  l: log-y  x: step/time  +/-: zoom");
        let mut spans = vec![Span::raw(hints).fg(Color::DarkGray)];
        if !app.metric_filter.text.is_empty() {
            spans.push(
                Span::raw(format!("  metrics ~ /{}/", app.metric_filter.text)).fg(Color::Yellow),
            );
        }
        Line::from(spans)
    };
    frame.render_widget(Paragraph::new(line), area);
}

fn draw_workspace(frame: &mut Frame<'_>, area: Rect, app: &App) {
    let [list, charts] =
        Layout::horizontal([Constraint::Length(34), Constraint::Min(10)]).areas(area);
    draw_run_list(frame, list, app);
    let focused_panes = app.show_system || app.show_console;
    if focused_panes && area.height > 24 {
        let [top, bottom] =
            Layout::vertical([Constraint::Percentage(65), Constraint::Percentage(35)])
                .areas(charts);
        draw_charts(frame, top, app);
        draw_bottom(frame, bottom, app);
    } else {
        draw_charts(frame, charts, app);
    }
}

fn draw_run_list(frame: &mut Frame<'_>, area: Rect, app: &App) {
    let shown = app.shown();
    let runs = app.visible_runs();
    let items: Vec<ListItem<'_>> = runs
        .iter()
        .map(|r| {
            let marker = match shown.iter().position(|p| *p == r.log) {
                Some(i) => Span::styled("● ", Style::default().fg(charts::color(i))),
                None => Span::raw("  "),
            };
            let pin = if app.pinned.contains(&r.log) {
                " *"
            } else {
                ""
            };
            let (label, state) = match app.loader(&r.log) {
                Some(l) => {
                    let log = l.log();
                    (log.data().label().to_string(), Some(log.data().state))
                }
                None => (r.id.clone(), None),
            };
            let mut spans = vec![marker, Span::raw(label)];
            if let Some(state) = state {
                spans.push(Span::styled(
                    format!(" {}", state.name()),
                    state_style(state),
                ));
            }
            spans.push(Span::raw(pin));
            let date = format!(
                "   {}-{}-{} {}:{}",
                &r.started[0..4],
                &r.started[4..6],
                &r.started[6..8],
                &r.started[9..11],
                &r.started[11..13]
            );
            ListItem::new(vec![
                Line::from(spans),
                Line::from(date).fg(Color::DarkGray),
            ])
        })
        .collect();
    let title = if app.run_filter.text.is_empty() {
        format!(" Runs ({}) ", runs.len())
    } else {
        format!(
            " Runs ({}/{}) /{}/ ",
            runs.len(),
            app.runs.len(),
            app.run_filter.text
        )
    };
    let list = List::new(items)
        .block(Block::default().borders(Borders::ALL).title(title))
        .highlight_style(Style::default().add_modifier(Modifier::REVERSED));
    let mut state = ListState::default().with_selected((!runs.is_empty()).then_some(app.cursor));
    frame.render_stateful_widget(list, area, &mut state);
}

fn draw_run(frame: &mut Frame<'_>, area: Rect, app: &App) {
    let (side, main) = if app.show_overview {
        let [side, main] =
            Layout::horizontal([Constraint::Length(40), Constraint::Min(10)]).areas(area);
        (Some(side), main)
    } else {
        (None, area)
    };
    if let Some(side) = side {
        draw_overview(frame, side, app);
    }
    if (app.show_system || app.show_console) && main.height > 20 {
        let [top, bottom] =
            Layout::vertical([Constraint::Percentage(60), Constraint::Percentage(40)]).areas(main);
        draw_charts(frame, top, app);
        draw_bottom(frame, bottom, app);
    } else {
        draw_charts(frame, main, app);
    }
}

/// System metrics beside the console, for the focused run.
fn draw_bottom(frame: &mut Frame<'_>, area: Rect, app: &App) {
    match (app.show_system, app.show_console) {
        (true, true) => {
            let [sys, console] =
                Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)])
                    .areas(area);
            draw_system(frame, sys, app);
            draw_console(frame, console, app);
        }
        (true, false) => draw_system(frame, area, app),
        (false, true) => draw_console(frame, area, app),
        (false, false) => {}
    }
}

fn with_focused<T>(app: &App, f: impl FnOnce(&RunData) -> T) -> Option<T> {
    let path = app.focused()?;
    let loader = app.loader(&path)?;
    let log = loader.log();
    Some(f(log.data()))
}

fn fmt_time(secs: f64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs_f64(secs.max(0.0));
    humantime::format_rfc3339_seconds(t).to_string()
}

fn kv_lines<'a>(title: &'a str, pairs: Vec<(String, String)>) -> Vec<Line<'a>> {
    let mut lines = vec![Line::from(title).bold().fg(Color::Cyan)];
    if pairs.is_empty() {
        lines.push(Line::from("  (none)").fg(Color::DarkGray));
    }
    for (k, v) in pairs {
        lines.push(Line::from(vec![
            Span::raw(format!("  {k}: ")).fg(Color::DarkGray),
            Span::raw(v),
        ]));
    }
    lines
}

fn draw_overview(frame: &mut Frame<'_>, area: Rect, app: &App) {
    let lines = with_focused(app, |run| {
        let mut about = vec![
            ("id".to_string(), run.id.clone()),
            ("name".to_string(), run.label().to_string()),
            ("project".to_string(), run.project.clone()),
        ];
        let state = match run.state.exit_code() {
            Some(code) => format!("{} (exit code {code})", run.state.name()),
            None => run.state.name().to_string(),
        };
        about.push(("state".into(), state));
        if let Some(t) = run.start_time {
            about.push(("started".into(), fmt_time(t)));
        }
        if !run.host.is_empty() {
            about.push(("host".into(), run.host.clone()));
        }
        if !run.group.is_empty() {
            about.push(("group".into(), run.group.clone()));
        }
        if !run.tags.is_empty() {
            about.push(("tags".into(), run.tags.join(", ")));
        }
        if !run.notes.is_empty() {
            about.push(("notes".into(), run.notes.clone()));
        }
        let text = |pairs: Vec<(String, wandb_proto::json::Value)>| {
            pairs
                .into_iter()
                .map(|(k, v)| {
                    let text = match v {
                        wandb_proto::json::Value::Str(s) => s,
                        wandb_proto::json::Value::Float(x) => charts::fmt_num(x),
                        other => other.to_json(),
                    };
                    (k, text)
                })
                .collect()
        };
        let mut lines = kv_lines("Run", about);
        lines.push(Line::from(""));
        lines.extend(kv_lines("Config", text(flatten(&run.config))));
        lines.push(Line::from(""));
        lines.extend(kv_lines("Summary", text(flatten(&run.summary))));
        lines
    })
    .unwrap_or_else(|| vec![Line::from("no run")]);
    let p = Paragraph::new(lines)
        .wrap(Wrap { trim: false })
        .block(Block::default().borders(Borders::ALL).title(" Overview "));
    frame.render_widget(p, area);
}

fn view(app: &App) -> View {
    View {
        x_axis: app.x_axis,
        log_y: app.log_y,
        zoom: app.zoom,
        pan: app.pan,
    }
}

/// The grid of metric charts, one page of it.
fn draw_charts(frame: &mut Frame<'_>, area: Rect, app: &App) {
    let names = app.metric_names();
    let shown: Vec<PathBuf> = app.shown();
    let per_page = app.per_page().max(1);
    let pages = names.len().div_ceil(per_page).max(1);
    let page = app.page.min(pages - 1);
    let title = format!(
        " Metrics ({}) · page {}/{} · x: {}{}{} ",
        names.len(),
        page + 1,
        pages,
        match app.x_axis {
            XAxis::Step => "step",
            XAxis::Time => "time",
        },
        if app.log_y { " · log y" } else { "" },
        if app.zoom > 0 {
            format!(" · zoom {}x", 1u32 << app.zoom)
        } else {
            String::new()
        },
    );
    let block = Block::default().borders(Borders::ALL).title(title);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if names.is_empty() {
        let msg = if app.metric_filter.text.is_empty() {
            "no metrics logged yet"
        } else {
            "no metric matches the filter"
        };
        frame.render_widget(Paragraph::new(msg).fg(Color::DarkGray), inner);
        return;
    }
    let guards: Vec<_> = shown
        .iter()
        .enumerate()
        .filter_map(|(i, p)| app.loader(p).map(|l| (i, l.log())))
        .collect();
    let (rows, cols) = app.grid;
    let row_areas =
        Layout::vertical(vec![Constraint::Ratio(1, u32::from(rows)); rows.into()]).split(inner);
    let mut cells = Vec::new();
    for row in row_areas.iter() {
        cells.extend(
            Layout::horizontal(vec![Constraint::Ratio(1, u32::from(cols)); cols.into()])
                .split(*row)
                .iter()
                .copied(),
        );
    }
    for (name, cell) in names.iter().skip(page * per_page).zip(cells) {
        let traces: Vec<Trace<'_>> = guards
            .iter()
            .filter_map(|(i, log)| {
                let run = log.data();
                run.metrics.get(name).map(|series| Trace {
                    series,
                    start: run.start_time.unwrap_or(0.0),
                    color: charts::color(*i),
                })
            })
            .collect();
        charts::draw(frame, cell, name, &traces, view(app));
    }
}

fn draw_system(frame: &mut Frame<'_>, area: Rect, app: &App) {
    let block = Block::default().borders(Borders::ALL).title(" System ");
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let Some(path) = app.focused() else { return };
    let Some(loader) = app.loader(&path) else {
        return;
    };
    let log = loader.log();
    let run = log.data();
    if run.system.is_empty() {
        frame.render_widget(
            Paragraph::new("no system metrics").fg(Color::DarkGray),
            inner,
        );
        return;
    }
    // As many charts as fit at 8 rows each, two across.
    let fit = usize::from((inner.height / 8).max(1)) * 2;
    let names: Vec<&String> = run.system.keys().take(fit).collect();
    let rows = names.len().div_ceil(2) as u32;
    let row_areas = Layout::vertical(vec![Constraint::Ratio(1, rows); rows as usize]).split(inner);
    let cells: Vec<Rect> = row_areas
        .iter()
        .flat_map(|r| {
            Layout::horizontal([Constraint::Ratio(1, 2), Constraint::Ratio(1, 2)])
                .split(*r)
                .to_vec()
        })
        .collect();
    for (name, cell) in names.into_iter().zip(cells) {
        let trace = Trace {
            series: &run.system[name],
            start: run.start_time.unwrap_or(0.0),
            color: Color::Cyan,
        };
        let v = View {
            x_axis: XAxis::Time,
            log_y: false,
            zoom: 0,
            pan: 0,
        };
        charts::draw(frame, cell, name, &[trace], v);
    }
}

fn draw_console(frame: &mut Frame<'_>, area: Rect, app: &App) {
    let height = usize::from(area.height.saturating_sub(2));
    let (lines, total) = with_focused(app, |run| {
        let tail: Vec<Line<'static>> = run
            .console
            .tail(height)
            .map(|l| {
                let style = match l.stream {
                    crate::runlog::Stream::Stderr => Style::default().fg(Color::Red),
                    crate::runlog::Stream::Stdout => Style::default(),
                };
                Line::styled(l.text(), style)
            })
            .collect();
        (tail, run.console.total())
    })
    .unwrap_or_default();
    let p = Paragraph::new(lines).block(
        Block::default()
            .borders(Borders::ALL)
            .title(format!(" Console ({total} lines) ")),
    );
    frame.render_widget(p, area);
}

/// Clears an area for an overlay.
pub fn clear(frame: &mut Frame<'_>, area: Rect) {
    frame.render_widget(Clear, area);
}
