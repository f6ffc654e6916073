//! Tables for people that fit the width they are read at. Ids and names are
//! never broken across lines: when a table is too wide, the caller's
//! lower-value columns are shortened or dropped first, in the order it gives,
//! and free text wraps at words.

use comfy_table::{presets, Cell, CellAlignment, Color, ColumnConstraint, ContentArrangement, Table};

/// Columns between two cells.
const GAP: usize = 2;

/// Used when nothing tells the width: a pipe or a file, read later on some
/// screen or in a log viewer.
const FALLBACK_WIDTH: usize = 120;

/// Rows per table when a list is streamed (`status`, `history`): each page
/// is its own table, so memory stays flat however long the list.
pub const PAGE: usize = 1000;

/// The width to fit: `COLUMNS` if set (as Python's `shutil.get_terminal_size`
/// does: a person or a script asked for it), else stdout's terminal, else
/// [`FALLBACK_WIDTH`].
pub fn width() -> usize {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse().ok())
        .filter(|&w: &usize| w > 0)
        .or_else(|| terminal_size::terminal_size_of(std::io::stdout()).map(|(w, _)| usize::from(w.0)))
        .unwrap_or(FALLBACK_WIDTH)
}

pub struct Column {
    header: &'static str,
    /// The cells, richest form first, then shorter forms of the same
    /// information; a reduction moves to the next form, and past the last
    /// one drops the column.
    forms: Vec<Vec<String>>,
    /// Free text, wrapped at words down to this width; `None`: never wrapped.
    wrap_min: Option<usize>,
    right: bool,
    colours: Vec<Option<Color>>,
}

impl Column {
    /// A column whose cells are never broken (ids, names, dates, counts).
    pub fn whole(header: &'static str, cells: Vec<String>) -> Self {
        Column { header, forms: vec![cells], wrap_min: None, right: false, colours: Vec::new() }
    }

    /// Free text that may wrap, down to `min` columns.
    pub fn text(header: &'static str, cells: Vec<String>, min: usize) -> Self {
        Column { wrap_min: Some(min), ..Column::whole(header, cells) }
    }

    /// A shorter form of the same cells, used before the column is dropped.
    pub fn or_shorter(mut self, cells: Vec<String>) -> Self {
        self.forms.push(cells);
        self
    }

    pub fn right(mut self) -> Self {
        self.right = true;
        self
    }

    /// The foreground colour of each cell (on a terminal only).
    pub fn colours(mut self, colours: Vec<Option<Color>>) -> Self {
        self.colours = colours;
        self
    }

    /// The narrowest this column can be in form `form`.
    fn min_width(&self, form: usize) -> usize {
        let widest = self.forms[form].iter().map(|c| text_width(c)).chain([self.header.len()]).max().unwrap_or(0);
        match self.wrap_min {
            Some(min) => widest.min(min.max(self.header.len())),
            None => widest,
        }
    }
}

/// Lays `columns` out within `width`: while the narrowest layout is too
/// wide, applies the next of `reductions` (a column's header: its next
/// shorter form, or dropping it). What still does not fit is printed wider
/// than `width` rather than breaking an id.
pub fn render(mut columns: Vec<Column>, reductions: &[&str], width: usize, colour: bool) -> String {
    let mut form = vec![0; columns.len()];
    let too_wide = |form: &[usize], columns: &[Column]| {
        let shown = columns.iter().zip(form).filter(|(c, &f)| f < c.forms.len());
        shown.map(|(c, &f)| c.min_width(f) + GAP).sum::<usize>() > width + GAP
    };
    for header in reductions {
        if !too_wide(&form, &columns) {
            break;
        }
        if let Some(i) = columns.iter().position(|c| c.header == *header) {
            form[i] += 1;
        }
    }

    let mut t = Table::new();
    t.load_style(presets::NOTHING);
    t.set_content_arrangement(ContentArrangement::Dynamic);
    // The padding, left and right of a cell, makes the gap between columns;
    // `width` counts a trailing one that trim_fmt removes.
    t.set_width(u16::try_from(width + GAP).unwrap_or(u16::MAX));
    if colour {
        t.enforce_styling();
    } else {
        t.force_no_tty();
    }
    let kept: Vec<(Column, usize)> = columns.drain(..).zip(form).filter(|(c, f)| *f < c.forms.len()).collect();
    t.set_header(kept.iter().map(|(c, _)| Cell::new(c.header)));
    let rows = kept.first().map_or(0, |(c, f)| c.forms[*f].len());
    for row in 0..rows {
        t.add_row(kept.iter().map(|(c, f)| {
            let mut cell = Cell::new(&c.forms[*f][row]);
            if c.right {
                cell = cell.set_alignment(CellAlignment::Right);
            }
            match c.colours.get(row).copied().flatten() {
                Some(colour) => cell.fg(colour),
                None => cell,
            }
        }));
    }
    for (i, (c, _)) in kept.iter().enumerate() {
        // invariant: the table has a column per header, set above
        let column = t.column_mut(i).expect("a column per header");
        column.set_padding((0, GAP as u16));
        if c.wrap_min.is_none() {
            column.set_constraint(ColumnConstraint::ContentWidth);
        }
    }
    t.trim_fmt()
}

/// `text` in lines of at most `width` characters, each after `indent`
/// spaces but the first (which follows a label of that width): broken at
/// spaces only, so a path or an id longer than the line stays whole.
pub fn wrap(text: &str, width: usize, indent: usize) -> String {
    let room = width.saturating_sub(indent).max(1);
    let mut lines: Vec<String> = Vec::new();
    for word in text.split(' ').filter(|w| !w.is_empty()) {
        match lines.last_mut() {
            Some(line) if line.chars().count() + 1 + word.chars().count() <= room => {
                line.push(' ');
                line.push_str(word);
            }
            _ => lines.push(word.to_owned()),
        }
    }
    lines.join(&format!("\n{}", " ".repeat(indent)))
}

fn text_width(s: &str) -> usize {
    s.lines().map(|l| l.chars().count()).max().unwrap_or(0)
}

/// `1 key`, `3 keys`: the words rekey counts take an `s`.
pub fn count(n: usize, word: &str) -> String {
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_wraps_at_spaces_within_the_width_and_never_breaks_a_word() {
        let text = "deliver to credentials-file /a/very/long/path/to/the/credentials [app] (kept beside the file)";
        let wrapped = wrap(text, 30, 6);
        assert!(wrapped.lines().all(|l| l.chars().count() <= 30 || !l.trim().contains(' ')), "{wrapped}");
        assert!(wrapped.lines().skip(1).all(|l| l.starts_with("      ")), "{wrapped}");
        assert_eq!(wrapped.split_whitespace().collect::<Vec<_>>(), text.split_whitespace().collect::<Vec<_>>());
        assert_eq!(wrap("short", 80, 6), "short");
    }

    fn cells(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn table(width: usize) -> String {
        let columns = vec![
            Column::whole("USER", cells(&["a-rather-long-user-name", "bob"])),
            Column::whole("KEY", cells(&["AKIAAAAAAAAAAAAAAAAA", "AKIABBBBBBBBBBBBBBBB"])),
            Column::text("REASON", cells(&["active key is 300 days old (limit 90)", "fine"]), 12),
            Column::whole("LAST USED", cells(&["2026-11-28 02:31 (s3)", "never"])).or_shorter(cells(&["2026-11-28", "never"])),
        ];
        render(columns, &["LAST USED", "REASON", "LAST USED"], width, false)
    }

    #[test]
    fn lower_value_columns_go_first_and_ids_stay_whole() {
        let wide = table(120);
        assert!(wide.contains("2026-11-28 02:31 (s3)") && wide.contains("active key is 300 days old (limit 90)"), "{wide}");
        let mid = table(80);
        assert!(mid.contains("2026-11-28") && !mid.contains("(s3)"), "last use shortened first:\n{mid}");
        let narrow = table(50);
        assert!(!narrow.contains("REASON") && !narrow.contains("LAST USED"), "{narrow}");
        for t in [&wide, &mid, &narrow] {
            assert!(t.contains("a-rather-long-user-name") && t.contains("AKIABBBBBBBBBBBBBBBB"), "{t}");
        }
        for (w, t) in [(120, &wide), (80, &mid), (50, &narrow)] {
            assert!(t.lines().all(|l| l.chars().count() <= w), "fits {w}:\n{t}");
        }
        let tiny = table(20);
        assert!(tiny.contains("a-rather-long-user-name  AKIAAAAAAAAAAAAAAAAA"), "wider than asked rather than broken:\n{tiny}");
    }

    #[test]
    fn counts_take_an_s() {
        assert_eq!(count(1, "user"), "1 user");
        assert_eq!(count(0, "key"), "0 keys");
        assert_eq!(count(2, "key"), "2 keys");
    }
}
