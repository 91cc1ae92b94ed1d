//! Loop steps (`for_each`): a step that runs once per item of a list, as instances `id[0]`,
//! `id[1]`, ... with `item` and `index` in their templates, at most the step's `max_parallel`
//! at a time, within the daemon's `[limits] loop_*`. The instances' plans are approved
//! together; the step's output is the list of their outputs; a failed instance fails the step
//! once the others have ended (at once, cancelling them, with `fail_fast`). The items and each
//! instance's state are stored with the step, so an approval, a crash or a retry finds the
//! same items and runs only the instances that did not complete.

use std::sync::Arc;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use super::context::step_values;
use super::step::{
    Call, CallEnd, Planning, Prepared, plan_call, plan_for_humans, plan_hash, step_context,
};
use super::transition::Ending;
use super::{ActiveRun, Engine, EngineError, LoopLimits, lock};
use crate::plugins::{Plan, SecretScope, SqlGrant, StepContext};
use crate::runbook::retry::FailureClass;
use crate::runbook::{Loop, LoopItems, Step};
use crate::store::{ApprovalRecord, Changes, InstanceRecord, RunRecord, StepStatus, now_ms};

/// How much of an item an approval's note about its instance shows.
const ITEM_PREVIEW_CHARS: usize = 120;

/// The most JSON a loop's items may take together: they are stored in the step's record,
/// which every instance's start and end writes again, and they travel in every `Run`
/// message. A loop over large records loops over their ids and reads each in its instance.
pub const MAX_ITEMS_BYTES: usize = 1024 * 1024;

/// How many failed instances the step's error names.
const ERRORS_NAMED: usize = 3;

/// One instance about to run: its config, its plan and what its call is granted.
struct InstanceCall {
    index: usize,
    item: serde_json::Value,
    prepared: Prepared,
    plan: Plan,
    sql: Vec<SqlGrant>,
    ctx: StepContext,
    /// The attempt number its idempotency key carries.
    key_attempt: u32,
}

/// How one instance ended.
struct InstanceEnd {
    index: usize,
    status: StepStatus,
    /// Why it failed, for the step's retry policy; `None` for one that completed or was
    /// cancelled (a cancelled instance says nothing about whether a retry would help).
    class: Option<FailureClass>,
    retry_after: Option<std::time::Duration>,
    log_omitted: u64,
}

impl Engine {
    /// Runs one attempt of a loop step: its items (recorded on the first attempt), its limits,
    /// its instances' plans and approval, then the instances that have not completed.
    pub(super) async fn run_loop(
        &self,
        active: &Arc<ActiveRun>,
        run_id: &str,
        position: usize,
    ) -> Result<(), EngineError> {
        let definition = &active.runbook.steps[position];
        let Some(each) = &definition.each else {
            return Ok(());
        };
        let (values, attempt, approval, dry_run, version, recorded, executions) = {
            let state = lock(&active.state);
            let record = &state.run.steps[position];
            (
                step_values(&state, definition),
                record.attempts + 1,
                record.approval.clone(),
                state.run.dry_run,
                state.run.version.clone(),
                record.instances.clone(),
                executions(&state.run),
            )
        };
        let instances = if recorded.is_empty() {
            let items = match loop_items(each, &values) {
                Ok(items) => items,
                // A dry run's earlier steps have plans for outputs: the items of a loop over
                // one are known only in a real run.
                Err(err) if dry_run => {
                    let output = serde_json::json!({ "dry_run": true, "items_unknown": err });
                    return self.finish_dry(active, position, output).await;
                }
                Err(err) => return self.finish_early(active, position, err).await,
            };
            let instances: Vec<InstanceRecord> =
                items.iter().cloned().map(InstanceRecord::pending).collect();
            if let Err(err) = check_limits(&self.inner.policy.loops, each, &instances, executions) {
                return self.finish_early(active, position, err).await;
            }
            // A dry run shows the plans and leaves nothing to resume.
            if !dry_run {
                let kept = self
                    .update_step(active, position, StepStatus::Pending, |step| {
                        step.set_instances(items)
                    })
                    .await?;
                if !kept {
                    return Ok(());
                }
            }
            instances
        } else {
            // The limits may have changed since the items were recorded (a restart with a new
            // config): what is left to run is checked again.
            if let Err(err) = check_limits(&self.inner.policy.loops, each, &recorded, executions) {
                return self.finish_early(active, position, err).await;
            }
            recorded
        };

        let plugins = &active.plugins;
        let scope = self.secret_scope(&active.runbook, definition);
        let Planning {
            needs_approval,
            planned,
            idempotent,
        } = self.planning(plugins, definition, dry_run);
        let mut calls = Vec::new();
        for (index, instance) in instances.iter().enumerate() {
            if instance.status == StepStatus::Completed {
                continue;
            }
            let name = instance_name(&definition.id, index);
            let values = instance_values(&values, &instance.item, index);
            let prepared = match self.prepare_call(active, values, definition) {
                Ok(prepared) => prepared,
                Err(err) => {
                    return self
                        .finish_early(active, position, format!("{name}: {err}"))
                        .await;
                }
            };
            // An instance a daemon stop interrupted sends its key again.
            let key_attempt = if instance.reuse_key {
                instance.key_attempt
            } else {
                attempt
            };
            let ctx = step_context(run_id, &name, attempt, key_attempt);
            let plan = match plan_call(plugins, definition, ctx.clone(), &prepared, &scope, planned)
                .await
            {
                Ok(plan) => plan,
                Err(err) => {
                    return self
                        .finish_early(active, position, format!("{name}: {err}"))
                        .await;
                }
            };
            let sql = match self.sql_grants(plugins, &definition.uses, &plan, &prepared) {
                Ok(sql) => sql,
                Err(err) => {
                    return self
                        .finish_early(active, position, format!("{name}: {err}"))
                        .await;
                }
            };
            calls.push(InstanceCall {
                index,
                item: instance.item.clone(),
                prepared,
                plan,
                sql,
                ctx,
                key_attempt,
            });
        }
        if dry_run {
            let plans: Vec<serde_json::Value> = calls
                .iter()
                .map(|call| {
                    serde_json::json!({
                        "instance": instance_name(&definition.id, call.index),
                        "item": call.item,
                        "plan": plan_for_humans(&call.plan, &scope),
                    })
                })
                .collect();
            let output = serde_json::json!({ "dry_run": true, "instances": plans });
            return self.finish_dry(active, position, output).await;
        }

        let asks = !calls.is_empty()
            && (needs_approval
                || calls
                    .iter()
                    .any(|call| self.plan_needs_approval(plugins, &definition.uses, &call.plan)));
        if asks {
            let hashes: Vec<(usize, String)> = calls
                .iter()
                .map(|call| (call.index, plan_hash(&version, &call.plan)))
                .collect();
            if !approves_every(approval.as_ref(), &hashes) {
                let (summary, shown) = self.loop_plan_for_humans(definition, &calls);
                let combined = combined_hash(&hashes);
                return self
                    .request_approval(active, position, summary, shown, (combined, hashes))
                    .await;
            }
            // A human read these statements and said yes (see `run_step`).
            for call in &mut calls {
                for grant in &mut call.sql {
                    grant.read_only = false;
                }
            }
        }

        let started = self
            .update_step(active, position, StepStatus::Pending, |step| {
                step.start(attempt, now_ms())
            })
            .await?;
        if !started {
            return Ok(());
        }
        let ends = self
            .run_instances(active, run_id, position, calls, &values, &scope, idempotent)
            .await?;
        if active.cancel.is_cancelled() || self.inner.stopping.is_cancelled() {
            // Cancelling the run already recorded the step as cancelled; a stopping daemon
            // leaves the rest of the loop (still `running`) to recovery at its next start.
            return Ok(());
        }
        let log_omitted = ends.iter().map(|end| end.log_omitted).sum();
        let ending = self.loop_ending(active, run_id, position, &ends)?;
        self.finish_attempt(
            active,
            position,
            StepStatus::Running,
            ending,
            definition.retry.as_ref(),
            log_omitted,
        )
        .await
    }

    /// Runs `calls`, at most the loop's `max_parallel` at once. With `fail_fast`, the first
    /// failure cancels the running instances and starts no other; those left unstarted are
    /// recorded as cancelled.
    #[allow(clippy::too_many_arguments)]
    async fn run_instances(
        &self,
        active: &Arc<ActiveRun>,
        run_id: &str,
        position: usize,
        calls: Vec<InstanceCall>,
        values: &serde_json::Value,
        scope: &SecretScope,
        idempotent: bool,
    ) -> Result<Vec<InstanceEnd>, EngineError> {
        let definition = &active.runbook.steps[position];
        let Some(each) = &definition.each else {
            return Ok(Vec::new());
        };
        let stop = active.cancel.child_token();
        let mut waiting = calls.into_iter();
        let mut running = FuturesUnordered::new();
        let mut ends = Vec::new();
        loop {
            // A stopping daemon starts no more instances: those left run after its next start.
            while running.len() < each.max_parallel
                && !stop.is_cancelled()
                && !self.inner.stopping.is_cancelled()
            {
                let Some(call) = waiting.next() else {
                    break;
                };
                running.push(self.run_instance(
                    active,
                    run_id,
                    position,
                    call,
                    (values, scope),
                    idempotent,
                    &stop,
                ));
            }
            let Some(end) = running.next().await else {
                break;
            };
            let end = end?;
            if each.fail_fast && end.status.is_failure() && !stop.is_cancelled() {
                stop.cancel();
            }
            ends.push(end);
        }
        let unstarted: Vec<usize> = waiting.map(|call| call.index).collect();
        let failed_fast = stop.is_cancelled() && !active.cancel.is_cancelled();
        if !unstarted.is_empty() && failed_fast {
            let failed = ends
                .iter()
                .find(|end| end.status.is_failure() && end.status != StepStatus::Cancelled)
                .map(|end| instance_name(&definition.id, end.index))
                .unwrap_or_default();
            let reason = format!("not started: {failed} failed and the loop has fail_fast");
            self.transition(active, |state| {
                if state.run.steps[position].status != StepStatus::Running {
                    return Ok((Changes::default(), Vec::new(), ()));
                }
                let now = now_ms();
                let (events, changes) = super::changed_step(state, position, |step| {
                    unstarted
                        .iter()
                        .flat_map(|&index| {
                            step.finish_instance(
                                index,
                                StepStatus::Cancelled,
                                None,
                                Some(reason.clone()),
                                now,
                            )
                        })
                        .collect::<Vec<_>>()
                });
                Ok((changes, events, ()))
            })?;
            ends.extend(unstarted.into_iter().map(|index| InstanceEnd {
                index,
                status: StepStatus::Cancelled,
                class: None,
                retry_after: None,
                log_omitted: 0,
            }));
        }
        Ok(ends)
    }

    /// Runs one instance: its start recorded (durably first when its plugin is not
    /// idempotent), its call, and its end with its output. `values` and `scope` are the
    /// step attempt's.
    #[allow(clippy::too_many_arguments)]
    async fn run_instance(
        &self,
        active: &Arc<ActiveRun>,
        run_id: &str,
        position: usize,
        call: InstanceCall,
        (values, scope): (&serde_json::Value, &SecretScope),
        idempotent: bool,
        stop: &CancellationToken,
    ) -> Result<InstanceEnd, EngineError> {
        let definition = &active.runbook.steps[position];
        let index = call.index;
        let key_attempt = call.key_attempt;
        let started = self
            .update_step(active, position, StepStatus::Running, |step| {
                step.start_instance(index, key_attempt, now_ms())
            })
            .await?;
        if !started {
            return Ok(InstanceEnd {
                index,
                status: StepStatus::Cancelled,
                class: None,
                retry_after: None,
                log_omitted: 0,
            });
        }
        if !idempotent {
            self.inner.store.flush().await?;
        }
        let output = self.output_batcher(run_id, &definition.id, Some(index));
        // Its plugin's inputs: what a step's are, and its item.
        let inputs = serde_json::json!({
            "params": values["params"],
            "steps": values["steps"],
            "item": call.item,
            "index": index,
        });
        let execute = Call {
            prepared: &call.prepared,
            plan: &call.plan,
            sql: call.sql,
            scope,
            ctx: call.ctx,
            inputs: inputs.to_string(),
        };
        let end = self
            .call_execute(active, position, definition, execute, &output, stop)
            .await;
        let summary = output.finish();
        let mut retry_after = None;
        let (status, result, error, class) = match end {
            CallEnd::Ended(Ending::Completed(result)) => {
                (StepStatus::Completed, result, None, None)
            }
            CallEnd::Ended(Ending::Failed {
                error,
                output,
                class,
                retry_after: wait,
            }) => {
                retry_after = wait;
                let status = if class == FailureClass::Timeout {
                    StepStatus::TimedOut
                } else {
                    StepStatus::Failed
                };
                (status, output, Some(error), Some(class))
            }
            CallEnd::Waiting(_) => (
                StepStatus::Failed,
                None,
                Some(
                    "the plugin answered `waiting` (an async invocation), which a loop's \
                     instance cannot wait for; run the step without `for_each`"
                        .to_owned(),
                ),
                Some(FailureClass::Permanent),
            ),
            // The run was cancelled (its step is recorded cancelled already), or a stopping
            // daemon's grace ran out: the instance stays `running` for recovery to judge.
            CallEnd::Cancelled if active.cancel.is_cancelled() => {
                return Ok(InstanceEnd {
                    index,
                    status: StepStatus::Cancelled,
                    class: None,
                    retry_after: None,
                    log_omitted: summary.omitted_bytes,
                });
            }
            // A loop's instance has no `resolve` of its own: one whose agent fell silent
            // fails, and the loop's retry policy (or an operator's retry) decides.
            CallEnd::Unknown(why) => (
                StepStatus::Failed,
                None,
                Some(why),
                Some(FailureClass::Permanent),
            ),
            CallEnd::Cancelled => (
                StepStatus::Cancelled,
                None,
                Some("cancelled: another instance failed and the loop has fail_fast".to_owned()),
                None,
            ),
        };
        self.transition(active, |state| {
            if state.run.steps[position].status != StepStatus::Running {
                return Ok((Changes::default(), Vec::new(), ()));
            }
            let (events, mut changes) = super::changed_step(state, position, |step| {
                step.finish_instance(index, status, result.clone(), error, now_ms())
            });
            if result.is_some() {
                changes.instance_outputs.push((position, index));
            }
            Ok((changes, events, ()))
        })?;
        Ok(InstanceEnd {
            index,
            status,
            class,
            retry_after,
            log_omitted: summary.omitted_bytes,
        })
    }

    /// How the loop's attempt ended: completed with the list of its instances' outputs (in
    /// item order), or failed naming the instances that did not complete.
    fn loop_ending(
        &self,
        active: &Arc<ActiveRun>,
        run_id: &str,
        position: usize,
        ends: &[InstanceEnd],
    ) -> Result<Ending, EngineError> {
        let (id, instances) = {
            let state = lock(&active.state);
            let step = &state.run.steps[position];
            (step.id.clone(), step.instances.clone())
        };
        let mut outputs = Vec::with_capacity(instances.len());
        let mut failures = Vec::new();
        for (index, instance) in instances.iter().enumerate() {
            let output = match (&instance.output, instance.status) {
                (Some(output), _) => Some(output.clone()),
                // Completed in an earlier attempt, or before a restart: read back.
                (None, StepStatus::Completed) => self.inner.store.instance_output(
                    run_id,
                    position,
                    instance.step_attempt,
                    index,
                )?,
                (None, _) => None,
            };
            outputs.push(output.unwrap_or(serde_json::Value::Null));
            if instance.status != StepStatus::Completed {
                failures.push((index, instance));
            }
        }
        let output = serde_json::Value::Array(outputs);
        if failures.is_empty() {
            return Ok(Ending::Completed(Some(output)));
        }
        let named: Vec<String> = failures
            .iter()
            .take(ERRORS_NAMED)
            .map(|(index, instance)| {
                format!(
                    "{}: {}",
                    instance_name(&id, *index),
                    instance.error.as_deref().unwrap_or("no error message")
                )
            })
            .collect();
        let more = failures.len().saturating_sub(ERRORS_NAMED);
        let error = format!(
            "{} of {} instances did not complete: {}{}",
            failures.len(),
            instances.len(),
            named.join("; "),
            if more > 0 {
                format!("; and {more} more")
            } else {
                String::new()
            }
        );
        // A retry helps only if every failure might pass another time; it waits at least as
        // long as the far end asked any instance to.
        let classes: Vec<FailureClass> = ends.iter().filter_map(|end| end.class).collect();
        let retry_after = ends.iter().filter_map(|end| end.retry_after).max();
        let class = if classes.contains(&FailureClass::Permanent) || classes.is_empty() {
            FailureClass::Permanent
        } else if classes.contains(&FailureClass::Transient) {
            FailureClass::Transient
        } else {
            FailureClass::Timeout
        };
        Ok(Ending::Failed {
            error,
            output: Some(output),
            class,
            retry_after,
        })
    }

    /// The approval request of a loop: one summary, and each instance's plan after a note
    /// naming it and its item, so that approvers see every plan and approve them at once.
    fn loop_plan_for_humans(
        &self,
        definition: &Step,
        calls: &[InstanceCall],
    ) -> (String, serde_json::Value) {
        let scope = self.approval_scope();
        let mut effects = Vec::new();
        for call in calls {
            let name = instance_name(&definition.id, call.index);
            let item = preview(&call.item);
            effects.push(serde_json::json!({
                "note": format!("{name} (item {item}): {}", call.plan.summary)
            }));
            if let serde_json::Value::Array(own) =
                plan_for_humans(&call.plan, &scope)["effects"].take()
            {
                effects.extend(own);
            }
        }
        let first = calls
            .first()
            .map(|call| call.plan.summary.clone())
            .unwrap_or_default();
        let summary = match calls.len() {
            1 => format!("1 instance of `{}`: {first}", definition.id),
            count => format!(
                "{count} instances of `{}`; the first: {first}",
                definition.id
            ),
        };
        let plan = serde_json::json!({ "summary": summary, "effects": effects });
        (summary, plan)
    }
}

/// `id[index]`: how an instance is named in logs, errors and idempotency keys.
pub(super) fn instance_name(step_id: &str, index: usize) -> String {
    format!("{step_id}[{index}]")
}

/// A step's values with an instance's `item` and `index`.
fn instance_values(
    values: &serde_json::Value,
    item: &serde_json::Value,
    index: usize,
) -> serde_json::Value {
    let mut values = values.clone();
    values["item"] = item.clone();
    values["index"] = serde_json::Value::from(index);
    values
}

/// A loop's items: its list, or what its expression evaluates to, which must be a list.
fn loop_items(each: &Loop, values: &serde_json::Value) -> Result<Vec<serde_json::Value>, String> {
    let value = match &each.items {
        LoopItems::List(items) => return Ok(items.clone()),
        LoopItems::Expression(expression) => {
            crate::template::evaluate_value(expression, &crate::template::context(values))
                .map_err(|err| format!("cannot evaluate `for_each`: {err}"))?
        }
    };
    match value {
        serde_json::Value::Array(items) => Ok(items),
        other => Err(format!(
            "`for_each` must give a list, and it gave {}: {}",
            json_kind(&other),
            preview(&other)
        )),
    }
}

/// Refuses a loop beyond the daemon's limits, before any of its instances starts. `instances`
/// are the loop's (those that completed count no more); `executions` is how many step
/// executions the run has made so far.
fn check_limits(
    limits: &LoopLimits,
    each: &Loop,
    instances: &[InstanceRecord],
    executions: usize,
) -> Result<(), String> {
    if instances.len() > limits.items {
        return Err(format!(
            "`for_each` gave {} items, and a loop may have at most {} (`[limits] loop_items` \
             in the daemon config)",
            instances.len(),
            limits.items
        ));
    }
    let bytes: usize = instances
        .iter()
        .map(|instance| crate::store::json_len(&instance.item))
        .sum();
    if bytes > MAX_ITEMS_BYTES {
        return Err(format!(
            "`for_each` gave {bytes} bytes of items, and a loop's items may take at most \
             {MAX_ITEMS_BYTES} (1 MiB) of JSON; loop over ids and read each item's details in \
             its instance"
        ));
    }
    if each.max_parallel > limits.parallel {
        return Err(format!(
            "`max_parallel = {}` runs more instances at once than the {} the daemon allows \
             (`[limits] loop_parallel` in the daemon config)",
            each.max_parallel, limits.parallel
        ));
    }
    if each.depth > limits.depth {
        return Err(format!(
            "this loop nests {} deep (its `for_each` reads a loop's output, which reads \
             another's, ...), and loops may nest at most {} deep (`[limits] loop_depth` in the \
             daemon config)",
            each.depth, limits.depth
        ));
    }
    let to_run = instances
        .iter()
        .filter(|instance| instance.status != StepStatus::Completed)
        .count();
    if executions.saturating_add(to_run) > limits.executions {
        return Err(format!(
            "running {to_run} instances would take the run to {} step executions, and a run may \
             make at most {} (`[limits] loop_executions` in the daemon config; the run has made \
             {executions})",
            executions.saturating_add(to_run),
            limits.executions
        ));
    }
    Ok(())
}

/// The step executions a run has made: every attempt of every step, a loop counting each run
/// of each of its instances.
fn executions(run: &RunRecord) -> usize {
    run.steps
        .iter()
        .map(|step| {
            if step.instances.is_empty() {
                step.attempts as usize
            } else {
                step.instances
                    .iter()
                    .map(|instance| instance.attempts as usize)
                    .sum()
            }
        })
        .sum()
}

/// Whether an approval covers every instance about to run: given, and for each instance's
/// exact plan (`hashes`: index and plan hash). Instances that completed since it was given
/// need no approval; a plan that changed needs a new one.
fn approves_every(approval: Option<&ApprovalRecord>, hashes: &[(usize, String)]) -> bool {
    approval.is_some_and(|approval| {
        approval.decision.as_ref().is_some_and(|d| d.approved)
            && hashes
                .iter()
                .all(|hash| approval.instance_plans.contains(hash))
    })
}

/// One hash for a loop's approval as a whole, from its instances' plan hashes in order.
fn combined_hash(hashes: &[(usize, String)]) -> String {
    let mut hasher = Sha256::new();
    for (index, hash) in hashes {
        hasher.update((*index as u64).to_be_bytes());
        hasher.update(hash.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// A value's JSON, cut to [`ITEM_PREVIEW_CHARS`] characters.
fn preview(value: &serde_json::Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(ITEM_PREVIEW_CHARS) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "a table",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn each(items: LoopItems, max_parallel: usize, depth: usize) -> Loop {
        Loop {
            items,
            max_parallel,
            fail_fast: false,
            depth,
        }
    }

    fn pending(count: usize) -> Vec<InstanceRecord> {
        (0..count)
            .map(|index| InstanceRecord::pending(serde_json::json!(index)))
            .collect()
    }

    #[test]
    fn items_come_from_a_list_or_an_expression_that_gives_one() {
        let values = serde_json::json!({ "params": { "hosts": ["a", "b"], "one": "a" } });
        let list = each(LoopItems::List(vec![serde_json::json!(1)]), 1, 1);
        assert_eq!(
            loop_items(&list, &values).unwrap(),
            vec![serde_json::json!(1)]
        );
        let hosts = each(LoopItems::Expression("params.hosts".into()), 1, 1);
        assert_eq!(
            loop_items(&hosts, &values).unwrap(),
            vec![serde_json::json!("a"), serde_json::json!("b")]
        );
        let one = each(LoopItems::Expression("params.one".into()), 1, 1);
        let err = loop_items(&one, &values).unwrap_err();
        assert_eq!(
            err,
            "`for_each` must give a list, and it gave a string: \"a\""
        );
        let missing = each(LoopItems::Expression("params.nope".into()), 1, 1);
        assert!(
            loop_items(&missing, &values)
                .unwrap_err()
                .starts_with("cannot evaluate `for_each`:"),
        );
    }

    #[test]
    fn each_limit_is_refused_with_the_config_key_that_raises_it() {
        let limits = LoopLimits {
            items: 3,
            executions: 10,
            depth: 2,
            parallel: 2,
        };
        let list = LoopItems::List(Vec::new());
        let fine = each(list.clone(), 2, 2);
        assert_eq!(check_limits(&limits, &fine, &pending(3), 7), Ok(()));
        let cases = [
            (each(list.clone(), 1, 1), pending(4), 0, "loop_items"),
            (each(list.clone(), 3, 1), pending(1), 0, "loop_parallel"),
            (each(list.clone(), 1, 3), pending(1), 0, "loop_depth"),
            (each(list.clone(), 1, 1), pending(3), 8, "loop_executions"),
        ];
        for (each, instances, executions, key) in cases {
            let err = check_limits(&limits, &each, &instances, executions).unwrap_err();
            assert!(err.contains(&format!("`[limits] {key}`")), "{key}: {err}");
        }
        let big = vec![InstanceRecord::pending(serde_json::json!(
            "x".repeat(MAX_ITEMS_BYTES)
        ))];
        let err = check_limits(&limits, &fine, &big, 0).unwrap_err();
        assert!(err.contains("at most 1048576 (1 MiB)"), "{err}");
        // Completed instances run no more: they do not count again.
        let mut done = pending(3);
        done[0].status = StepStatus::Completed;
        done[1].status = StepStatus::Completed;
        assert_eq!(check_limits(&limits, &fine, &done, 9), Ok(()));
    }

    #[test]
    fn a_run_counts_each_instance_run_as_an_execution() {
        let mut run = RunRecord {
            id: "r".into(),
            runbook: "rb".into(),
            version: "v".into(),
            status: crate::store::RunStatus::Running,
            params: Default::default(),
            steps: vec![
                crate::store::StepRecord::pending("a", "shell"),
                crate::store::StepRecord::pending("b", "shell"),
            ],
            created_at: 0,
            started_at: 0,
            finished_at: 0,
            error: None,
            dry_run: false,
            retries: Vec::new(),
        };
        run.steps[0].attempts = 2;
        run.steps[1].attempts = 1;
        run.steps[1].instances = pending(3);
        run.steps[1].instances[0].attempts = 2;
        run.steps[1].instances[1].attempts = 1;
        assert_eq!(executions(&run), 5);
    }

    #[test]
    fn a_long_item_is_cut_in_notes() {
        let long = serde_json::json!("x".repeat(500));
        let shown = preview(&long);
        assert_eq!(shown.chars().count(), ITEM_PREVIEW_CHARS + 3);
        assert!(shown.ends_with("..."));
        assert_eq!(preview(&serde_json::json!([1, 2])), "[1,2]");
    }
}
