//! `leet symon`: this machine's system metrics, live, without a run.
//!
//! The same sampler a run's service uses (`wandb-monitor`: CPU, memory,
//! disk, network, cgroup limits, and NVIDIA GPUs where NVML loads), drawn
//! as the run view draws system metrics. Samples come from a thread every
//! `--interval`; the screen is redrawn per sample or key, nothing else.

use std::io::IsTerminal as _;
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use indexmap::IndexMap;
use ratatui::crossterm::event::{self, Event as TermEvent, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Stylize as _};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};
use wandb_monitor::{Config, Metric, Sampler};

use crate::runlog::Series;
use crate::tui::app::{Input, XAxis};
use crate::tui::charts::{self, Trace, View};

/// The monitor's state: one series per metric, in first-seen order.
pub struct Symon {
    /// What the machine is (CPU model, GPUs), for the header.
    pub machine: String,
    pub interval: Duration,
    pub series: IndexMap<String, Series>,
    pub samples: u64,
    pub start: f64,
    pub filter: Input,
    pub page: usize,
    pub grid: (u16, u16),
    pub help: bool,
    pub quit: bool,
}

impl Symon {
    pub fn new(machine: String, interval: Duration, grid: (u16, u16)) -> Self {
        Self {
            machine,
            interval,
            series: IndexMap::new(),
            samples: 0,
            start: now(),
            filter: Input::default(),
            page: 0,
            grid,
            help: false,
            quit: false,
        }
    }

    pub fn add(&mut self, time: f64, metrics: &[Metric]) {
        for m in metrics {
            self.series.entry(m.key.clone()).or_default().push(
                self.samples as f64,
                time,
                m.value.as_f64(),
            );
        }
        self.samples += 1;
    }

    fn names(&self) -> Vec<&String> {
        let re = self.filter.regex();
        self.series
            .keys()
            .filter(|k| re.as_ref().is_none_or(|re| re.is_match(k)))
            .collect()
    }

    fn per_page(&self) -> usize {
        (usize::from(self.grid.0) * usize::from(self.grid.1)).max(1)
    }

    pub fn on_key(&mut self, code: KeyCode, ctrl: bool) {
        if self.filter.editing {
            match code {
                KeyCode::Enter => self.filter.editing = false,
                KeyCode::Esc => {
                    self.filter.text.clear();
                    self.filter.editing = false;
                }
                KeyCode::Backspace => {
                    self.filter.text.pop();
                }
                KeyCode::Char(c) => self.filter.text.push(c),
                _ => {}
            }
            self.page = 0;
            return;
        }
        if self.help {
            self.help = false;
            return;
        }
        let pages = self.names().len().div_ceil(self.per_page()).max(1);
        match code {
            KeyCode::Char('c') if ctrl => self.quit = true,
            KeyCode::Char('q') | KeyCode::Esc => self.quit = true,
            KeyCode::Char('?') => self.help = true,
            KeyCode::Char('f') | KeyCode::Char('/') => self.filter.editing = true,
            KeyCode::Char('n') | KeyCode::PageDown => self.page = (self.page + 1) % pages,
            KeyCode::Char('p') | KeyCode::PageUp => self.page = (self.page + pages - 1) % pages,
            _ => {}
        }
    }

    pub fn draw(&self, frame: &mut ratatui::Frame<'_>) {
        let [header, body, status] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Min(3),
            Constraint::Length(1),
        ])
        .areas(frame.area());
        frame.render_widget(
            Paragraph::new(Line::from(vec![
                Span::from(" LEET symon ").reversed().bold(),
                Span::raw(format!(
                    " {} · every {} · {} samples",
                    self.machine,
                    humantime::format_duration(self.interval),
                    self.samples
                )),
            ])),
            header,
        );
        let names = self.names();
        let per_page = self.per_page();
        let pages = names.len().div_ceil(per_page).max(1);
        let page = self.page.min(pages - 1);
        let block = Block::default().borders(Borders::ALL).title(format!(
            " System metrics ({}) · page {}/{} ",
            names.len(),
            page + 1,
            pages
        ));
        let inner = block.inner(body);
        frame.render_widget(block, body);
        if names.is_empty() {
            let msg = if self.samples == 0 {
                "sampling…"
            } else {
                "no metric matches the filter"
            };
            frame.render_widget(Paragraph::new(msg).fg(Color::DarkGray), inner);
        }
        let (rows, cols) = self.grid;
        let cells: Vec<_> = Layout::vertical(vec![Constraint::Ratio(1, rows.into()); rows.into()])
            .split(inner)
            .iter()
            .flat_map(|r| {
                Layout::horizontal(vec![Constraint::Ratio(1, cols.into()); cols.into()])
                    .split(*r)
                    .to_vec()
            })
            .collect();
        let view = View {
            x_axis: XAxis::Time,
            log_y: false,
            zoom: 0,
            pan: 0,
        };
        for (i, (name, cell)) in names.iter().skip(page * per_page).zip(cells).enumerate() {
            let trace = Trace {
                series: &self.series[*name],
                start: self.start,
                color: charts::color(i),
            };
            charts::draw(frame, cell, name, &[trace], view);
        }
        let hint = if self.filter.editing {
            Line::from(vec![
                Span::raw(" filter metrics (regex): ").fg(Color::Yellow),
                Span::raw(self.filter.text.clone()),
                Span::raw("▏"),
            ])
        } else {
            Line::from(" ?: help  q: quit  f: filter  n/p: page").fg(Color::DarkGray)
        };
        frame.render_widget(Paragraph::new(hint), status);
        if self.help {
            crate::tui::help::draw(frame, frame.area());
        }
    }
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[derive(Debug, thiserror::Error)]
pub enum SymonError {
    #[error("symon needs a terminal: stdout is not one (try `wandb-core monitor`)")]
    NotATerminal,
    #[error("--interval must be at least 100ms")]
    Interval,
    #[error("terminal: {0}")]
    Terminal(#[from] std::io::Error),
}

enum Msg {
    Sample(f64, Vec<Metric>),
    Key(KeyCode, bool),
    Resize,
}

/// Runs the monitor until the user quits.
pub fn run(interval: Duration) -> Result<(), SymonError> {
    if !std::io::stdout().is_terminal() {
        return Err(SymonError::NotATerminal);
    }
    if interval < Duration::from_millis(100) {
        return Err(SymonError::Interval);
    }
    // No process of interest: the machine's metrics only.
    let mut sampler = Sampler::new(Config {
        pid: 0,
        ..Config::default()
    });
    let facts = sampler.probe();
    let mut machine = format!("{} CPU(s)", facts.cpu_count_logical);
    if let Some(cpu) = facts.cpu.as_ref().filter(|c| !c.model.is_empty()) {
        machine.push_str(&format!(" ({})", cpu.model));
    }
    if facts.gpu_count > 0 {
        machine.push_str(&format!(", {} GPU(s) {}", facts.gpu_count, facts.gpu_type));
    }
    let (tx, rx) = mpsc::sync_channel(16);
    let samples = tx.clone();
    std::thread::Builder::new()
        .name("symon-sample".into())
        .spawn(move || {
            loop {
                let metrics = sampler.sample();
                if samples.send(Msg::Sample(now(), metrics)).is_err() {
                    break;
                }
                std::thread::sleep(interval);
            }
        })?;
    std::thread::Builder::new()
        .name("symon-input".into())
        .spawn(move || {
            while let Ok(ev) = event::read() {
                let msg = match ev {
                    TermEvent::Key(k) if k.kind != KeyEventKind::Release => {
                        Msg::Key(k.code, k.modifiers.contains(KeyModifiers::CONTROL))
                    }
                    TermEvent::Resize(..) => Msg::Resize,
                    _ => continue,
                };
                if tx.send(msg).is_err() {
                    break;
                }
            }
        })?;
    let mut symon = Symon::new(machine, interval, crate::config::load().metrics_grid);
    let mut terminal = ratatui::try_init()?;
    let result = (|| -> std::io::Result<()> {
        loop {
            terminal.draw(|f| symon.draw(f))?;
            let Ok(first) = rx.recv() else { return Ok(()) };
            for msg in std::iter::once(first).chain(rx.try_iter()) {
                match msg {
                    Msg::Sample(t, metrics) => symon.add(t, &metrics),
                    Msg::Key(code, ctrl) => symon.on_key(code, ctrl),
                    Msg::Resize => {}
                }
            }
            if symon.quit {
                return Ok(());
            }
        }
    })();
    ratatui::restore();
    Ok(result?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    fn screen(t: &Terminal<TestBackend>) -> String {
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

    #[test]
    fn draws_the_sampled_metrics_and_filters_them() {
        let mut s = Symon::new("2 CPU(s)".into(), Duration::from_secs(2), (2, 2));
        let mut sampler = Sampler::new(Config {
            pid: 0,
            ..Config::default()
        });
        for i in 0..3 {
            s.add(s.start + f64::from(i), &sampler.sample());
        }
        assert!(
            s.series.contains_key("memory_percent"),
            "{:?}",
            s.series.keys()
        );
        let mut t = Terminal::new(TestBackend::new(120, 30)).unwrap();
        t.draw(|f| s.draw(f)).unwrap();
        let text = screen(&t);
        assert!(text.contains("LEET symon"), "{text}");
        assert!(text.contains("3 samples"), "{text}");
        s.on_key(KeyCode::Char('f'), false);
        for c in "memory".chars() {
            s.on_key(KeyCode::Char(c), false);
        }
        s.on_key(KeyCode::Enter, false);
        assert_eq!(s.filter.text, "memory");
        t.draw(|f| s.draw(f)).unwrap();
        let text = screen(&t);
        assert!(text.contains("memory_percent"), "{text}");
        assert!(!text.contains(" cpu "), "filtered out: {text}");
    }
}
