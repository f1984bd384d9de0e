//! `output.log`: captured stdout/stderr as a terminal would show it.
//!
//! Each stream goes through a small terminal emulator, so progress bars that
//! redraw with `\r` or cursor movements leave their final state, not every
//! frame: `\r` returns to column 0 and overwrites, `ESC[nA`/`B`/`C`/`D` move
//! the cursor, `ESC[K` erases. The last lines stay editable; older lines are
//! final and leave memory once written, so memory is bounded however long
//! the run prints.

use std::collections::VecDeque;

/// Lines a cursor can still move back to.
const EDITABLE_LINES: usize = 64;
/// Longest line kept (longer output wraps onto the next line).
const MAX_LINE: usize = 4096;

#[derive(Debug, Default, Clone, Copy)]
struct Cursor {
    /// Global index of the line the cursor is on; `None`: at the start of a
    /// line not created yet.
    line: Option<u64>,
    col: usize,
}

/// The emulated terminal of both streams, sharing one file of lines.
#[derive(Debug, Default)]
pub struct Console {
    /// Editable lines; `lines[0]` has global index `base`.
    lines: VecDeque<Vec<char>>,
    /// Whether each editable line was started by stderr.
    lines_stderr: VecDeque<bool>,
    base: u64,
    /// Lines that became final and were not written out yet.
    finished: Vec<String>,
    finished_stderr: Vec<bool>,
    /// For each stream (stdout, stderr): cursor and its own recent lines.
    cursors: [Cursor; 2],
    own: [VecDeque<u64>; 2],
    /// Escape sequence being parsed, per stream.
    esc: [Option<String>; 2],
    dirty: bool,
}

impl Console {
    /// Feeds text written to stdout (`stderr == false`) or stderr.
    pub fn write(&mut self, stderr: bool, text: &str) {
        let s = usize::from(stderr);
        for c in text.chars() {
            if let Some(seq) = &mut self.esc[s] {
                seq.push(c);
                if seq == "\u{1b}" {
                    continue;
                }
                if seq.len() == 2 && !seq.ends_with('[') {
                    self.esc[s] = None; // not a CSI sequence: drop it
                    continue;
                }
                if c.is_ascii_alphabetic() || seq.len() > 16 {
                    let seq = self.esc[s].take().unwrap();
                    self.csi(s, &seq);
                }
                continue;
            }
            match c {
                '\u{1b}' => self.esc[s] = Some("\u{1b}".to_string()),
                '\n' => self.newline(s),
                '\r' => self.cursors[s].col = 0,
                c if c.is_control() && c != '\t' => {}
                c => self.put(s, c),
            }
        }
        self.dirty = true;
    }

    fn line_mut(&mut self, global: u64) -> Option<&mut Vec<char>> {
        let idx = global.checked_sub(self.base)? as usize;
        self.lines.get_mut(idx)
    }

    fn new_line(&mut self, s: usize) -> u64 {
        let global = self.base + self.lines.len() as u64;
        self.lines.push_back(Vec::new());
        self.lines_stderr.push_back(s == 1);
        self.own[s].push_back(global);
        if self.own[s].len() > EDITABLE_LINES {
            self.own[s].pop_front();
        }
        while self.lines.len() > EDITABLE_LINES * 2 {
            let line = self.lines.pop_front().unwrap();
            self.finished.push(line.into_iter().collect());
            let stderr = self.lines_stderr.pop_front().unwrap_or(false);
            self.finished_stderr.push(stderr);
            self.base += 1;
        }
        global
    }

    fn put(&mut self, s: usize, c: char) {
        let line = match self.cursors[s].line {
            Some(l) if l >= self.base => l,
            _ => {
                let l = self.new_line(s);
                self.cursors[s] = Cursor {
                    line: Some(l),
                    col: 0,
                };
                l
            }
        };
        let col = self.cursors[s].col;
        if col >= MAX_LINE {
            self.newline(s);
            return self.put(s, c);
        }
        let text = self.line_mut(line).expect("cursor line is in memory");
        if text.len() <= col {
            text.resize(col, ' ');
            text.push(c);
        } else {
            text[col] = c;
        }
        self.cursors[s].col += 1;
    }

    fn newline(&mut self, s: usize) {
        let cur = self.cursors[s];
        // The next line of this stream, if the cursor was moved up.
        let next = cur.line.and_then(|l| {
            self.own[s]
                .iter()
                .copied()
                .find(|g| *g > l && *g >= self.base)
        });
        self.cursors[s] = match (cur.line, next) {
            (Some(_), Some(n)) => Cursor {
                line: Some(n),
                col: 0,
            },
            (None, _) => {
                // An empty line.
                let l = self.new_line(s);
                let _ = l;
                Cursor { line: None, col: 0 }
            }
            _ => Cursor { line: None, col: 0 },
        };
    }

    fn csi(&mut self, s: usize, seq: &str) {
        let body = &seq[2..seq.len() - 1];
        let n: usize = body.parse().unwrap_or(1).max(1);
        let cur = self.cursors[s];
        match seq.chars().last() {
            Some('A') => {
                // Up n lines of this stream.
                let own: Vec<u64> = self.own[s]
                    .iter()
                    .copied()
                    .filter(|g| *g >= self.base)
                    .collect();
                let pos = match cur.line {
                    Some(l) => own.iter().position(|g| *g == l).unwrap_or(own.len()),
                    None => own.len(),
                };
                if let Some(&target) = own.get(pos.saturating_sub(n)) {
                    self.cursors[s].line = Some(target);
                }
            }
            Some('B') => {
                for _ in 0..n {
                    self.newline(s);
                }
                self.cursors[s].col = cur.col;
            }
            Some('C') => self.cursors[s].col += n,
            Some('D') => self.cursors[s].col = cur.col.saturating_sub(n),
            Some('G') => self.cursors[s].col = n - 1,
            Some('K') => {
                let col = cur.col;
                if let Some(line) = cur.line.and_then(|l| self.line_mut(l)) {
                    match body {
                        "2" => line.clear(),
                        "1" => line.iter_mut().take(col + 1).for_each(|c| *c = ' '),
                        _ => line.truncate(col),
                    }
                }
            }
            _ => {} // colours and the rest do not change the text
        }
    }

    /// Whether anything changed since [`take_dirty`](Self::take_dirty).
    pub fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    /// Lines that are final since the last call (to append to the file).
    pub fn drain_finished(&mut self) -> Vec<String> {
        self.finished_stderr.clear();
        std::mem::take(&mut self.finished)
    }

    /// [`drain_finished`](Self::drain_finished), each line with whether
    /// stderr wrote it (the file stream marks those).
    pub fn drain_finished_with_stream(&mut self) -> Vec<(String, bool)> {
        let stderr = std::mem::take(&mut self.finished_stderr);
        std::mem::take(&mut self.finished)
            .into_iter()
            .zip(stderr)
            .collect()
    }

    /// [`tail`](Self::tail), each line with whether stderr wrote it.
    pub fn tail_with_stream(&self) -> Vec<(String, bool)> {
        self.tail()
            .into_iter()
            .zip(self.lines_stderr.iter().copied())
            .collect()
    }

    /// The editable tail as it looks now (to rewrite after the final lines).
    pub fn tail(&self) -> Vec<String> {
        self.lines
            .iter()
            .map(|l| l.iter().collect::<String>().trim_end().to_string())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(c: &mut Console) -> String {
        let mut lines = c.drain_finished();
        lines.extend(c.tail());
        lines.join("\n")
    }

    #[test]
    fn carriage_returns_overwrite_and_partial_writes_join() {
        let mut c = Console::default();
        c.write(false, "hello stdout line 1\n");
        c.write(
            false,
            "hello stdout line 2 with progress\rprogress 50%\rprogress 100%\n",
        );
        c.write(true, "hello stderr\n");
        c.write(false, "partial line without newline ...");
        c.write(false, "completed\n");
        assert_eq!(
            render(&mut c),
            "hello stdout line 1\nprogress 100%line 2 with progress\nhello stderr\npartial line without newline ...completed"
        );
    }

    #[test]
    fn cursor_up_redraws_earlier_lines() {
        let mut c = Console::default();
        c.write(false, "bar 1: 10%\nbar 2: 10%\n");
        c.write(false, "\u{1b}[2A\rbar 1: 90%\n\rbar 2: 80%\n");
        c.write(false, "\u{1b}[31mred\u{1b}[0m\n");
        assert_eq!(render(&mut c), "bar 1: 90%\nbar 2: 80%\nred");
    }

    #[test]
    fn memory_stays_bounded() {
        let mut c = Console::default();
        for i in 0..10_000 {
            c.write(false, &format!("line {i}\n"));
        }
        assert!(c.tail().len() <= EDITABLE_LINES * 2);
        let finished = c.drain_finished();
        assert_eq!(finished[0], "line 0");
        assert_eq!(finished.len() + c.tail().len(), 10_000);
    }
}
