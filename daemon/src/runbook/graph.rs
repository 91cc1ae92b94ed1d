//! The step graph of a runbook, built once when it is parsed: steps by id, which steps need
//! each step, and which steps each step's templates read. Lookups during checks and runs are
//! then constant time instead of a scan of every step.

use std::collections::{BTreeSet, HashMap};

use super::{LoopItems, Step};
use crate::template;

/// Steps by id and the reverse of `needs`, in step indices.
#[derive(Debug, Clone, Default)]
pub(super) struct StepGraph {
    by_id: HashMap<String, usize>,
    /// `dependents[i]`: indices of the steps whose `needs` name step `i`, ascending.
    dependents: Vec<Vec<usize>>,
}

impl StepGraph {
    /// Indexes `steps` and fills in each step's `reads`.
    pub(super) fn link(steps: &mut [Step]) -> Self {
        let mut by_id = HashMap::with_capacity(steps.len());
        for (index, step) in steps.iter().enumerate() {
            // The first step with an id wins, as a scan in file order would find it; a
            // duplicate id is reported by the checker.
            by_id.entry(step.id.clone()).or_insert(index);
        }
        let mut dependents = vec![Vec::new(); steps.len()];
        for (index, step) in steps.iter().enumerate() {
            for need in &step.needs {
                // An unknown need is reported by the checker; it has no dependents to record.
                let Some(&need) = by_id.get(need) else {
                    continue;
                };
                let list: &mut Vec<usize> = &mut dependents[need];
                // Steps are visited in order, so a need listed twice shows up as a repeat of
                // the last entry.
                if list.last() != Some(&index) {
                    list.push(index);
                }
            }
        }
        let graph = Self { by_id, dependents };
        for step in steps.iter_mut() {
            step.reads = graph.reads_of(step);
        }
        graph.set_loop_depths(steps);
        graph
    }

    /// Sets each loop's depth: one more than that of the deepest loop whose output its
    /// `for_each` reads. Walked with a stack of its own (a chain of loops may be long), and a
    /// cycle (reported by the checker) counts no deeper than where it closes.
    fn set_loop_depths(&self, steps: &mut [Step]) {
        let sources: Vec<Vec<usize>> = steps
            .iter()
            .map(|step| match step.each.as_ref().map(|each| &each.items) {
                Some(LoopItems::Expression(expression)) => {
                    let mut read = BTreeSet::new();
                    if let Ok(vars) = template::expression_variables(expression) {
                        self.add_step_reads(&vars, &mut read);
                    }
                    read.iter()
                        .filter_map(|id| self.index(id))
                        .filter(|&index| steps[index].each.is_some())
                        .collect()
                }
                _ => Vec::new(),
            })
            .collect();
        let mut depths: Vec<Option<usize>> = vec![None; steps.len()];
        let mut visiting = vec![false; steps.len()];
        for start in 0..steps.len() {
            let mut stack = vec![start];
            while let Some(&index) = stack.last() {
                if depths[index].is_some() {
                    stack.pop();
                    continue;
                }
                visiting[index] = true;
                let next = sources[index]
                    .iter()
                    .copied()
                    .find(|&source| depths[source].is_none() && !visiting[source]);
                if let Some(source) = next {
                    stack.push(source);
                    continue;
                }
                let deepest = sources[index]
                    .iter()
                    .filter_map(|&source| depths[source])
                    .max()
                    .unwrap_or(0);
                depths[index] = Some(deepest + 1);
                visiting[index] = false;
                stack.pop();
            }
        }
        for (step, depth) in steps.iter_mut().zip(depths) {
            if let Some(each) = &mut step.each {
                each.depth = depth.unwrap_or(1);
            }
        }
    }

    /// The index of the step with this id.
    pub(super) fn index(&self, id: &str) -> Option<usize> {
        self.by_id.get(id).copied()
    }

    /// Indices of the steps that need step `index`; empty for an index out of range.
    pub(super) fn dependents(&self, index: usize) -> &[usize] {
        self.dependents.get(index).map_or(&[], Vec::as_slice)
    }

    /// The ids of the steps of this runbook that `step`'s `with` templates, `if` and
    /// `for_each` read, sorted and without repeats.
    fn reads_of(&self, step: &Step) -> Vec<String> {
        let mut reads = BTreeSet::new();
        let mut texts = Vec::new();
        template_strings(&step.with, &mut texts);
        for text in texts {
            // A template that does not parse reads nothing here: the checker reports it.
            if let Ok(vars) = template::template_variables(text) {
                self.add_step_reads(&vars, &mut reads);
            }
        }
        let loop_expression = match step.each.as_ref().map(|each| &each.items) {
            Some(LoopItems::Expression(expression)) => Some(expression),
            _ => None,
        };
        for expression in step.condition.iter().chain(loop_expression) {
            if let Ok(vars) = template::expression_variables(expression) {
                self.add_step_reads(&vars, &mut reads);
            }
        }
        reads.into_iter().collect()
    }

    /// Adds the `<id>` of every `steps.<id>...` variable that names a step of this runbook.
    fn add_step_reads(&self, vars: &BTreeSet<String>, reads: &mut BTreeSet<String>) {
        for var in vars {
            let mut parts = var.split('.');
            if parts.next() == Some("steps")
                && let Some(id) = parts.next()
                && self.by_id.contains_key(id)
            {
                reads.insert(id.to_owned());
            }
        }
    }
}

/// Every string in a `with` value that holds template syntax, at any depth.
fn template_strings<'a>(value: &'a serde_json::Value, out: &mut Vec<&'a str>) {
    match value {
        serde_json::Value::String(text) if template::is_template(text) => out.push(text),
        serde_json::Value::Array(items) => {
            for item in items {
                template_strings(item, out);
            }
        }
        serde_json::Value::Object(map) => {
            for item in map.values() {
                template_strings(item, out);
            }
        }
        _ => {}
    }
}
