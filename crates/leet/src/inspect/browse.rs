//! The record browser `leet inspect` opens on a terminal.
//!
//! Scrolling a million-line text dump is how one looks for the record that
//! went wrong; a list of records (type and a one-line gist) beside the
//! selected one in full is quicker. Deliberately small: move, scroll,
//! filter by type with `/`, quit with `q`. Records are kept as their
//! bytes and decoded when shown.

use ratatui::Frame;
use ratatui::crossterm::event::{
    self, Event as TermEvent, KeyCode, KeyEvent, KeyEventKind, KeyModifiers,
};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, List, ListItem, ListState, Paragraph};

use super::InspectError;
use super::gofmt::{self, Time};
use super::record::{self, Decoded};
use super::source::{LogFile, RawEvent, Records};
use super::text::message_text;

/// One record in the list.
pub struct Entry {
    pub index: u64,
    pub type_name: String,
    pub brief: String,
    bytes: Vec<u8>,
}

impl Entry {
    /// An entry for an encoded record (its type and gist from `decoded`).
    pub fn new(index: u64, decoded: &Decoded, bytes: Vec<u8>) -> Self {
        Self {
            index,
            type_name: decoded.type_name.clone(),
            brief: brief(decoded),
            bytes,
        }
    }
}

/// A few words about a record for the list.
fn brief(rec: &Decoded) -> String {
    let Some((field, payload)) = rec.payload() else {
        return String::new();
    };
    let get = |name: &str| payload.get_field_by_name(name);
    let count = |name: &str, one: &str, many: &str| {
        let n = get(name)
            .and_then(|v| v.as_list().map(<[_]>::len))
            .unwrap_or(0);
        format!("{n} {}", if n == 1 { one } else { many })
    };
    match field.name() {
        "run" => get("run_id")
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
        "history" if payload.has_field_by_name("step") => {
            let num = get("step")
                .and_then(|s| s.as_message()?.get_field_by_name("num")?.as_i64())
                .unwrap_or(0);
            format!("step {num}")
        }
        "summary" => count("update", "item", "items"),
        "config" => count("update", "key", "keys"),
        "files" => count("files", "file", "files"),
        "exit" => {
            let code = get("exit_code").and_then(|v| v.as_i32()).unwrap_or(0);
            format!("exit code {code}")
        }
        "stats" => get("timestamp")
            .and_then(|t| {
                let t = t.as_message()?;
                Some(gofmt::clock_local(Time::from_proto(
                    &prost_types::Timestamp {
                        seconds: t.get_field_by_name("seconds")?.as_i64()?,
                        nanos: t.get_field_by_name("nanos")?.as_i32()?,
                    },
                )))
            })
            .unwrap_or_default(),
        "output" | "output_raw" => get("line")
            .and_then(|v| {
                v.as_str()?
                    .split(['\r', '\n'])
                    .map(str::trim)
                    .find(|s| !s.is_empty())
                    .map(str::to_string)
            })
            .unwrap_or_default(),
        _ => String::new(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Focus {
    List,
    Detail,
}

/// The browser's state.
pub struct Browser {
    file: String,
    entries: Vec<Entry>,
    /// Indices into `entries` that pass the filter.
    shown: Vec<usize>,
    list: ListState,
    focus: Focus,
    scroll: u16,
    filter: String,
    /// The filter being typed, while `/` is active.
    editing: Option<String>,
    /// The selected record's text, by entry index.
    detail: Option<(usize, String)>,
}

impl Browser {
    pub fn new(file: String, entries: Vec<Entry>) -> Self {
        let mut browser = Self {
            file,
            entries,
            shown: Vec::new(),
            list: ListState::default(),
            focus: Focus::List,
            scroll: 0,
            filter: String::new(),
            editing: None,
            detail: None,
        };
        browser.apply_filter();
        browser
    }

    fn apply_filter(&mut self) {
        let needle = self.filter.to_lowercase();
        self.shown = (0..self.entries.len())
            .filter(|&i| self.entries[i].type_name.to_lowercase().contains(&needle))
            .collect();
        self.list.select((!self.shown.is_empty()).then_some(0));
        self.scroll = 0;
    }

    fn selected(&self) -> Option<usize> {
        self.list
            .selected()
            .and_then(|i| self.shown.get(i).copied())
    }

    fn move_by(&mut self, delta: isize) {
        if self.shown.is_empty() {
            return;
        }
        let current = self.list.selected().unwrap_or(0) as isize;
        let last = self.shown.len() as isize - 1;
        self.list
            .select(Some((current + delta).clamp(0, last) as usize));
        self.scroll = 0;
    }

    /// Handles a key; `false` once the user quits.
    pub fn handle(&mut self, key: KeyEvent) -> bool {
        if key.kind == KeyEventKind::Release {
            return true;
        }
        if let Some(text) = &mut self.editing {
            match key.code {
                KeyCode::Enter => {
                    self.filter = std::mem::take(text);
                    self.editing = None;
                    self.apply_filter();
                }
                KeyCode::Esc => self.editing = None,
                KeyCode::Backspace => {
                    text.pop();
                }
                KeyCode::Char(c) => text.push(c),
                _ => {}
            }
            return true;
        }
        let page = 10;
        match (key.code, self.focus) {
            (KeyCode::Char('q'), _) => return false,
            (KeyCode::Char('c'), _) if key.modifiers.contains(KeyModifiers::CONTROL) => {
                return false;
            }
            (KeyCode::Char('/'), _) => self.editing = Some(self.filter.clone()),
            (KeyCode::Tab | KeyCode::BackTab, _) => {
                self.focus = match self.focus {
                    Focus::List => Focus::Detail,
                    Focus::Detail => Focus::List,
                };
            }
            (KeyCode::Esc, _) => self.focus = Focus::List,
            (KeyCode::Down | KeyCode::Char('j'), Focus::List) => self.move_by(1),
            (KeyCode::Up | KeyCode::Char('k'), Focus::List) => self.move_by(-1),
            (KeyCode::PageDown, Focus::List) => self.move_by(page),
            (KeyCode::PageUp, Focus::List) => self.move_by(-page),
            (KeyCode::Home, Focus::List) => self.move_by(isize::MIN / 2),
            (KeyCode::End, Focus::List) => self.move_by(isize::MAX / 2),
            (KeyCode::Down | KeyCode::Char('j'), Focus::Detail) => {
                self.scroll = self.scroll.saturating_add(1);
            }
            (KeyCode::Up | KeyCode::Char('k'), Focus::Detail) => {
                self.scroll = self.scroll.saturating_sub(1);
            }
            (KeyCode::PageDown, Focus::Detail) => {
                self.scroll = self.scroll.saturating_add(page as u16)
            }
            (KeyCode::PageUp, Focus::Detail) => {
                self.scroll = self.scroll.saturating_sub(page as u16)
            }
            (KeyCode::Home, Focus::Detail) => self.scroll = 0,
            _ => {}
        }
        true
    }

    /// The selected record in the text format.
    fn detail_text(&mut self) -> &str {
        let Some(i) = self.selected() else {
            return "";
        };
        if self.detail.as_ref().is_none_or(|(at, _)| *at != i) {
            let entry = &self.entries[i];
            let text = match record::decode(&entry.bytes) {
                Ok(rec) => message_text(&rec.msg),
                Err(why) => format!("(does not decode: {why})"),
            };
            self.detail = Some((i, text));
        }
        self.detail.as_ref().map_or("", |(_, t)| t.as_str())
    }

    pub fn render(&mut self, frame: &mut Frame) {
        let [main, status] =
            Layout::vertical([Constraint::Min(1), Constraint::Length(1)]).areas(frame.area());
        let [left, right] =
            Layout::horizontal([Constraint::Percentage(40), Constraint::Percentage(60)])
                .areas(main);

        let focused = Style::default().add_modifier(Modifier::BOLD);
        let items: Vec<ListItem> = self
            .shown
            .iter()
            .map(|&i| {
                let e = &self.entries[i];
                let line = if e.brief.is_empty() {
                    format!("{:>4} {}", e.index, e.type_name)
                } else {
                    format!("{:>4} {}  {}", e.index, e.type_name, e.brief)
                };
                ListItem::new(line)
            })
            .collect();
        let mut title = format!(
            " Records [{} of {}] ",
            self.list.selected().map_or(0, |s| s + 1),
            self.shown.len()
        );
        if !self.filter.is_empty() {
            title.push_str(&format!("type ~ {:?} ", self.filter));
        }
        let list_block = Block::default().borders(Borders::ALL).title(title);
        let list = List::new(items)
            .block(if self.focus == Focus::List {
                list_block.border_style(focused)
            } else {
                list_block
            })
            .highlight_style(Style::default().add_modifier(Modifier::REVERSED));
        frame.render_stateful_widget(list, left, &mut self.list);

        let heading = self
            .selected()
            .map(|i| {
                format!(
                    " record {}: {} ",
                    self.entries[i].index, self.entries[i].type_name
                )
            })
            .unwrap_or_else(|| " no records ".to_string());
        let scroll = self.scroll;
        let focus = self.focus;
        let text = self.detail_text().to_string();
        let detail_block = Block::default().borders(Borders::ALL).title(heading);
        let detail = Paragraph::new(text)
            .block(if focus == Focus::Detail {
                detail_block.border_style(focused)
            } else {
                detail_block
            })
            .scroll((scroll, 0));
        frame.render_widget(detail, right);

        let line = match &self.editing {
            Some(text) => format!(" Filter by type: {text}▏ (enter: apply, esc: cancel)"),
            None => format!(
                " {}  ·  ↑↓ move  tab: list/detail  /: filter by type  q: quit",
                self.file
            ),
        };
        frame.render_widget(Line::raw(line), status);
    }
}

/// Reads the log and browses it until the user quits.
pub fn run(log: &LogFile) -> Result<(), InspectError> {
    let mut records = Records::open(log)?;
    let mut entries = Vec::new();
    loop {
        match records.next_raw()? {
            RawEvent::Record(bytes) => {
                if let Ok(decoded) = record::decode(bytes) {
                    let index = entries.len() as u64 + 1;
                    entries.push(Entry::new(index, &decoded, bytes.to_vec()));
                }
            }
            RawEvent::Skipped(_) => {}
            RawEvent::Incomplete | RawEvent::End => break,
        }
    }
    let mut browser = Browser::new(log.display.clone(), entries);
    let mut terminal = ratatui::try_init().map_err(InspectError::Terminal)?;
    let result = (|| -> std::io::Result<()> {
        loop {
            terminal.draw(|frame| browser.render(frame))?;
            if let TermEvent::Key(key) = event::read()?
                && !browser.handle(key)
            {
                return Ok(());
            }
        }
    })();
    ratatui::restore();
    result.map_err(InspectError::Terminal)
}

#[cfg(test)]
mod tests {
    use prost::Message as _;
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;
    use wandb_proto::pb;

    use super::*;

    fn entry(index: u64, record: pb::Record) -> Entry {
        let bytes = record.encode_to_vec();
        let decoded = record::decode(&bytes).unwrap();
        Entry::new(index, &decoded, bytes)
    }

    fn screen(terminal: &Terminal<TestBackend>) -> String {
        let buffer = terminal.backend().buffer();
        let mut text = String::new();
        for y in 0..buffer.area.height {
            for x in 0..buffer.area.width {
                text.push_str(buffer[(x, y)].symbol());
            }
            text.push('\n');
        }
        text
    }

    #[test]
    fn shows_the_list_beside_the_selected_record_and_filters_by_type() {
        let run = pb::Record {
            num: 1,
            record_type: Some(pb::record::RecordType::Run(pb::RunRecord {
                run_id: "abc123".into(),
                ..Default::default()
            })),
            ..Default::default()
        };
        let history = pb::Record {
            num: 2,
            record_type: Some(pb::record::RecordType::History(pb::HistoryRecord {
                item: vec![pb::HistoryItem {
                    key: "loss".into(),
                    value_json: "0.25".into(),
                    ..Default::default()
                }],
                step: Some(pb::HistoryStep { num: 7 }),
                ..Default::default()
            })),
            ..Default::default()
        };
        let mut browser = Browser::new(
            "run-abc123.wandb".into(),
            vec![entry(1, run), entry(2, history)],
        );
        let mut terminal = Terminal::new(TestBackend::new(90, 12)).unwrap();

        terminal.draw(|f| browser.render(f)).unwrap();
        let text = screen(&terminal);
        assert!(text.contains("Records [1 of 2]"), "{text}");
        assert!(text.contains("   1 run  abc123"), "{text}");
        assert!(text.contains("   2 history  step 7"), "{text}");
        assert!(text.contains("record 1: run"), "{text}");
        assert!(text.contains("run_id: \"abc123\""), "{text}");
        assert!(text.contains("run-abc123.wandb"), "{text}");

        // Down: the history row in full.
        browser.handle(KeyEvent::from(KeyCode::Down));
        terminal.draw(|f| browser.render(f)).unwrap();
        let text = screen(&terminal);
        assert!(text.contains("record 2: history"), "{text}");
        assert!(text.contains("value_json: \"0.25\""), "{text}");

        // `/hist⏎`: only history records.
        for key in [
            KeyCode::Char('/'),
            KeyCode::Char('h'),
            KeyCode::Char('i'),
            KeyCode::Enter,
        ] {
            assert!(browser.handle(KeyEvent::from(key)));
        }
        terminal.draw(|f| browser.render(f)).unwrap();
        let text = screen(&terminal);
        assert!(text.contains("Records [1 of 1] type ~ \"hi\""), "{text}");
        assert!(!text.contains("abc123 "), "{text}");
        assert!(!browser.handle(KeyEvent::from(KeyCode::Char('q'))));
    }
}
