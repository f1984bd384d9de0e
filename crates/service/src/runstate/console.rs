//! `output.log`: captured stdout/stderr as a terminal would show it.
//!
//! Each stream goes through a small terminal emulator, so progress bars that
//! redraw with `\r` or cursor movements leave their final state, not every
//! frame: `\r` returns to column 0 and overwrites, `ESC[nA`/`B`/`C`/`D`/`G`
//! move the cursor, `ESC[K` erases. The last lines stay editable; older
//! lines are final and leave memory once written, so memory is bounded
//! however long the run prints.
//!
//! Escape sequences are parsed by `vte` (the parser of Alacritty). Colours
//! and styles (SGR, `ESC[…m`) stay in the text as they were written, as
//! wandb-core keeps them, so the W&B UI shows coloured logs. Everything
//! else that does not change the text (window titles and hyperlinks, OSC;
//! charset selections such as `ESC(B`; modes such as a hidden cursor) is
//! left out instead of leaking into the file; a hyperlink keeps its text.

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
    /// The escape parser of each stream, and the bytes of the sequence it
    /// is in the middle of.
    parsers: [Parser; 2],
    dirty: bool,
}

/// A stream's escape parser.
#[derive(Default)]
struct Parser {
    vte: vte::Parser,
    raw: Vec<u8>,
}

impl std::fmt::Debug for Parser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parser").field("raw", &self.raw).finish()
    }
}

/// Longest escape sequence kept verbatim (a longer SGR is dropped).
const MAX_SEQUENCE: usize = 64;

/// What the parser found, applied to the console for one stream.
struct Perform<'a> {
    console: &'a mut Console,
    stream: usize,
    raw: &'a [u8],
    /// Whether the byte ended something (a character, a control, a
    /// sequence): the raw bytes start over.
    done: bool,
}

impl vte::Perform for Perform<'_> {
    fn print(&mut self, c: char) {
        self.console.put(self.stream, c);
        self.done = true;
    }

    fn execute(&mut self, byte: u8) {
        match byte {
            b'\n' => self.console.newline(self.stream),
            b'\r' => self.console.cursors[self.stream].col = 0,
            b'\t' => self.console.put(self.stream, '\t'),
            _ => {}
        }
        self.done = true;
    }

    fn csi_dispatch(
        &mut self,
        params: &vte::Params,
        intermediates: &[u8],
        ignore: bool,
        action: char,
    ) {
        self.done = true;
        if ignore || !intermediates.is_empty() {
            return;
        }
        if action == 'm' {
            if self.raw.len() <= MAX_SEQUENCE {
                for c in String::from_utf8_lossy(self.raw).chars() {
                    self.console.put(self.stream, c);
                }
            }
            return;
        }
        let first = params
            .iter()
            .next()
            .and_then(|p| p.first())
            .copied()
            .unwrap_or(0);
        self.console.csi(self.stream, action, first);
    }

    fn esc_dispatch(&mut self, _intermediates: &[u8], _ignore: bool, _byte: u8) {
        self.done = true;
    }

    fn osc_dispatch(&mut self, _params: &[&[u8]], _bell_terminated: bool) {
        self.done = true;
    }

    fn unhook(&mut self) {
        self.done = true;
    }
}

impl Console {
    /// Feeds text written to stdout (`stderr == false`) or stderr.
    pub fn write(&mut self, stderr: bool, text: &str) {
        let s = usize::from(stderr);
        let mut parser = std::mem::take(&mut self.parsers[s]);
        let bytes = text.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if parser.raw.is_empty() && bytes[i] != 0x1b {
                // Outside a sequence: everything up to the next escape at
                // once (no sequence bytes to keep).
                let end = bytes[i..]
                    .iter()
                    .position(|&b| b == 0x1b)
                    .map_or(bytes.len(), |p| i + p);
                let mut perform = Perform {
                    console: self,
                    stream: s,
                    raw: &[],
                    done: false,
                };
                parser.vte.advance(&mut perform, &bytes[i..end]);
                i = end;
                continue;
            }
            let byte = bytes[i];
            i += 1;
            if parser.raw.len() <= MAX_SEQUENCE {
                parser.raw.push(byte);
            }
            let mut perform = Perform {
                console: self,
                stream: s,
                raw: &parser.raw,
                done: false,
            };
            parser.vte.advance(&mut perform, &[byte]);
            if perform.done {
                parser.raw.clear();
            }
        }
        self.parsers[s] = parser;
        self.dirty = true;
    }

    fn line_mut(&mut self, global: u64) -> Option<&mut Vec<char>> {
        let idx = global.checked_sub(self.base)? as usize;
        self.lines.get_mut(idx)
    }

    fn new_line(&mut self, s: usize) -> u64 {
        let global = self.push_line(Vec::new(), s == 1);
        self.own[s].push_back(global);
        if self.own[s].len() > EDITABLE_LINES {
            self.own[s].pop_front();
        }
        global
    }

    /// A line after every other, owned by no stream (yet).
    fn push_line(&mut self, text: Vec<char>, stderr: bool) -> u64 {
        let global = self.base + self.lines.len() as u64;
        self.lines.push_back(text);
        self.lines_stderr.push_back(stderr);
        while self.lines.len() > EDITABLE_LINES * 2 {
            let line = self.lines.pop_front().unwrap();
            self.finished.push(line.into_iter().collect());
            let stderr = self.lines_stderr.pop_front().unwrap_or(false);
            self.finished_stderr.push(stderr);
            self.base += 1;
        }
        global
    }

    /// Text from `run.write_logs()`: whole lines after everything written
    /// so far, taken as they are (no escapes interpreted) and never edited
    /// by the streams' cursors, as wandb-core adds them.
    pub fn append_lines(&mut self, text: &str) {
        for line in text.strip_suffix('\n').unwrap_or(text).split('\n') {
            self.push_line(line.chars().take(MAX_LINE).collect(), false);
        }
        self.dirty = true;
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

    /// A cursor movement or erase (`action`) with its first parameter.
    fn csi(&mut self, s: usize, action: char, param: u16) {
        let n = usize::from(param.max(1));
        let cur = self.cursors[s];
        match action {
            'A' => {
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
            'B' => {
                for _ in 0..n {
                    self.newline(s);
                }
                self.cursors[s].col = cur.col;
            }
            'C' => self.cursors[s].col += n,
            'D' => self.cursors[s].col = cur.col.saturating_sub(n),
            'G' => self.cursors[s].col = n - 1,
            'K' => {
                let col = cur.col;
                if let Some(line) = cur.line.and_then(|l| self.line_mut(l)) {
                    match param {
                        2 => line.clear(),
                        1 => line.iter_mut().take(col + 1).for_each(|c| *c = ' '),
                        _ => line.truncate(col),
                    }
                }
            }
            _ => {} // the rest does not change the text
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
    fn logger_lines_follow_everything_whole() {
        let mut c = Console::default();
        c.write(false, "a\nprogress 50%");
        c.append_lines("x \x1b[1mbold\x1b[0m\ny\n");
        c.write(false, "\r\x1b[Kdone\nb\n");
        assert_eq!(render(&mut c), "a\ndone\nx \x1b[1mbold\x1b[0m\ny\nb");
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
        assert_eq!(
            render(&mut c),
            "bar 1: 90%\nbar 2: 80%\n\u{1b}[31mred\u{1b}[0m"
        );
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

    #[test]
    fn colours_stay_and_other_escapes_leave_no_trace() {
        let mut c = Console::default();
        // A window title, a hyperlink, what `tput sgr0` prints, a hidden
        // cursor, and a colour split across two writes.
        c.write(
            false,
            "\x1b]0;my title\x07hello \x1b]8;;http://x.y\x1b\\link\x1b]8;;\x1b\\ world\n",
        );
        c.write(false, "\x1b(B\x1b[mplain\x1b[?25l end\n");
        c.write(false, "\x1b[3");
        c.write(false, "2mgreen\x1b[0m\rG\n");
        assert_eq!(
            render(&mut c),
            "hello link world\n\x1b[mplain end\nG[32mgreen\x1b[0m"
        );
    }
}
