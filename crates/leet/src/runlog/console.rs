//! The run's console as a terminal showed it.
//!
//! The SDK captures output in pieces (`print("a", i)` arrives as "a", " ",
//! "0", "\n"), and progress bars redraw in place, so the pieces are
//! replayed the way a terminal would, per stream (each has its own
//! cursor): a carriage return moves to the start of the line and later
//! text overwrites (`50%\r100%` shows `100%`, `abcdef\rxy` shows
//! `xycdef`), `ESC[A` / `ESC[B` move a line up or down (nested progress
//! bars), and other escapes are kept as text. Lines are listed in the
//! order they were first written to, each with the time of that first
//! write, trailing blanks trimmed. This is W&B's inspector's replay
//! (`inspect --summary` shows it byte for byte), and the TUI's console.
//!
//! Only the newest [`KEEP`] lines are kept; the count is of all.

use std::collections::VecDeque;

use prost_types::Timestamp;
use wandb_proto::pb;

/// Lines kept; a cursor moved further up than this writes nowhere.
pub const KEEP: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    /// The stream of an `output` or `output_raw` record's `output_type`
    /// (both enums: `STDERR = 0`, `STDOUT = 1`).
    pub fn of_output_type(output_type: i32) -> Self {
        if output_type == pb::output_raw_record::OutputType::Stdout as i32 {
            Stream::Stdout
        } else {
            Stream::Stderr
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub stream: Stream,
    /// When the line was first written to (the capture's timestamp).
    pub time: Option<Timestamp>,
    chars: Vec<char>,
}

impl Line {
    /// The text as shown: trailing spaces and tabs dropped.
    pub fn text(&self) -> String {
        let s: String = self.chars.iter().collect();
        s.trim_end_matches([' ', '\t']).to_string()
    }
}

/// One stream's rows and cursor.
#[derive(Debug, Clone, Default)]
struct Cursor {
    /// The line id of each row, from row `first_row` on.
    rows: VecDeque<u64>,
    first_row: u64,
    row: u64,
    col: usize,
}

#[derive(Debug, Clone, Default)]
pub struct Console {
    /// Lines in the order they were created; `lines[0]` has id `first_id`.
    lines: VecDeque<Line>,
    first_id: u64,
    cursors: [Cursor; 2],
}

impl Console {
    /// Replays a piece of captured output.
    pub fn push(&mut self, stream: Stream, time: Option<Timestamp>, text: &str) {
        let chars: Vec<char> = text.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            let cursor = &mut self.cursors[stream as usize];
            match c {
                '\r' => cursor.col = 0,
                '\n' => {
                    cursor.row += 1;
                    cursor.col = 0;
                }
                '\u{1b}' if chars.get(i + 1) == Some(&'[') && chars.get(i + 2) == Some(&'A') => {
                    cursor.row = cursor.row.saturating_sub(1);
                    i += 3;
                    continue;
                }
                '\u{1b}' if chars.get(i + 1) == Some(&'[') && chars.get(i + 2) == Some(&'B') => {
                    cursor.row += 1;
                    i += 3;
                    continue;
                }
                c => self.put(stream, time, c),
            }
            i += 1;
        }
    }

    /// Writes one character at the stream's cursor, creating the rows up
    /// to it.
    fn put(&mut self, stream: Stream, time: Option<Timestamp>, c: char) {
        let slot = stream as usize;
        while {
            let cursor = &self.cursors[slot];
            cursor.first_row + cursor.rows.len() as u64 <= cursor.row
        } {
            let id = self.first_id + self.lines.len() as u64;
            self.lines.push_back(Line {
                stream,
                time,
                chars: Vec::new(),
            });
            self.cursors[slot].rows.push_back(id);
            if self.lines.len() > KEEP {
                self.lines.pop_front();
                self.first_id += 1;
                for cursor in &mut self.cursors {
                    while cursor.rows.front().is_some_and(|&id| id < self.first_id) {
                        cursor.rows.pop_front();
                        cursor.first_row += 1;
                    }
                }
            }
        }
        let cursor = &mut self.cursors[slot];
        let col = cursor.col;
        cursor.col += 1;
        let Some(index) = cursor.row.checked_sub(cursor.first_row) else {
            return;
        };
        let Some(&id) = cursor.rows.get(index as usize) else {
            return;
        };
        let Some(line) = id
            .checked_sub(self.first_id)
            .and_then(|i| self.lines.get_mut(i as usize))
        else {
            return;
        };
        if line.chars.len() <= col {
            line.chars.resize(col, ' ');
            line.chars.push(c);
        } else {
            line.chars[col] = c;
        }
    }

    /// Lines ever written.
    pub fn total(&self) -> u64 {
        self.first_id + self.lines.len() as u64
    }

    /// The newest `n` lines (of the [`KEEP`] kept), oldest first.
    pub fn tail(&self, n: usize) -> impl Iterator<Item = &Line> {
        self.lines.iter().skip(self.lines.len().saturating_sub(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(c: &Console) -> Vec<String> {
        c.tail(100).map(|l| l.text()).collect()
    }

    fn at(seconds: i64) -> Option<Timestamp> {
        Some(Timestamp { seconds, nanos: 0 })
    }

    #[test]
    fn replays_output_as_a_terminal_shows_it() {
        let mut c = Console::default();
        c.push(Stream::Stdout, at(1), "abcdef\rxy\n");
        c.push(Stream::Stdout, at(2), "\n\n");
        c.push(Stream::Stdout, at(3), "a\r\nb  \t\n");
        assert_eq!(texts(&c), ["xycdef", "", "", "a", "b"]);
        // Trailing newlines create no lines until something is written.
        assert_eq!(c.total(), 5);
        assert_eq!(c.tail(5).nth(1).unwrap().time, at(3));
    }

    #[test]
    fn pieces_join_into_lines_and_progress_bars_redraw() {
        let mut c = Console::default();
        for piece in ["line", " ", "0", "\n", "10%\r50%\r100%\n", "a\r\nb"] {
            c.push(Stream::Stdout, at(1), piece);
        }
        c.push(Stream::Stderr, None, "oops\n");
        assert_eq!(texts(&c), ["line 0", "100%", "a", "b", "oops"]);
        assert_eq!(c.total(), 5);
        assert_eq!(c.tail(1).next().unwrap().time, None);
    }

    #[test]
    fn streams_keep_their_own_cursor_and_lines_keep_creation_order() {
        let mut c = Console::default();
        c.push(Stream::Stdout, at(6), "o1");
        c.push(Stream::Stderr, at(7), "e1\n");
        c.push(Stream::Stdout, at(8), "o2\n");
        c.push(Stream::Stdout, at(9), "a\n");
        c.push(Stream::Stdout, at(10), "\u{1b}[Ab\n");
        c.push(Stream::Stdout, at(11), "q\u{1b}[Bw\n");
        c.push(Stream::Stdout, at(12), "x\u{1b}[2Ky\n");
        assert_eq!(texts(&c), ["o1o2", "e1", "b", "q", " w", "x\u{1b}[2Ky"]);
        assert_eq!(c.tail(10).next().unwrap().time, at(6));
        assert_eq!(c.tail(10).nth(1).unwrap().stream, Stream::Stderr);
    }

    #[test]
    fn keeps_the_newest_lines_and_counts_all() {
        let mut c = Console::default();
        for i in 0..KEEP + 10 {
            c.push(Stream::Stdout, None, &format!("{i}\n"));
        }
        assert_eq!(c.total(), (KEEP + 10) as u64);
        assert_eq!(c.tail(KEEP + 10).count(), KEEP);
        assert_eq!(c.tail(KEEP).next().unwrap().text(), "10");
        assert_eq!(c.tail(1).next().unwrap().text(), (KEEP + 9).to_string());
        // A cursor far above what is kept writes nowhere.
        c.push(Stream::Stdout, None, &"\u{1b}[A".repeat(KEEP + 20));
        c.push(Stream::Stdout, None, "lost");
        assert_eq!(c.total(), (KEEP + 10) as u64);
    }
}
