//! Plain-text tables with aligned columns, for the human output of list commands.

use std::io::{self, Write};

use crate::format;

/// Rows under a header, written with columns padded to their widest cell.
#[derive(Debug)]
pub struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles.
    pub fn new(header: &[&'static str]) -> Self {
        Self {
            header: header.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Adds a row (one cell per column). Control characters in a cell are escaped: cells hold
    /// what runs and runbooks say (errors, names), and a raw one would break the row or the
    /// terminal.
    pub fn row(&mut self, cells: Vec<String>) {
        let cells = cells
            .iter()
            .map(|cell| format::printable(cell).into_owned())
            .collect();
        self.rows.push(cells);
    }

    /// Writes the header and rows; the last column is not padded, so no line ends in spaces.
    pub fn write(&self, out: &mut dyn Write) -> io::Result<()> {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let header: Vec<String> = self.header.iter().map(|h| (*h).to_owned()).collect();
        for row in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (i, (cell, width)) in row.iter().zip(&widths).enumerate() {
                if i + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    line.push_str(&format!("{cell:<width$}  "));
                }
            }
            writeln!(out, "{}", line.trim_end())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_aligned() {
        let mut table = Table::new(&["A", "BB", "C"]);
        table.row(vec!["long".into(), "x".into(), "last".into()]);
        let mut out = Vec::new();
        table.write(&mut out).expect("writes");
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            "A     BB  C\nlong  x   last\n"
        );
    }
}
