//! Migrations of data directories written by an older runbookd. Each one is idempotent (it can
//! run again after a crash halfway) and the schema version is bumped only once its data is on
//! disk, so an upgrade never drops a run, an event, a version or a secret.

use serde_json::Value;

use super::StoreError;
use super::runs::{output_key, step_key};

/// Brings the database from schema `found` to the current one.
pub(super) fn migrate(db: &sled::Db, meta: &sled::Tree, found: u32) -> Result<(), StoreError> {
    if found == 0 {
        return Err(StoreError::Migration {
            from: found,
            reason: "schema 0 never existed".into(),
        });
    }
    if found < 2 {
        one_to_two(db)?;
        db.flush()?;
        meta.insert("schema_version", serde_json::to_vec(&2u32)?)?;
        db.flush()?;
        tracing::info!("migrated the data directory from schema 1 to schema 2");
    }
    Ok(())
}

/// Schema 1 kept each run as one record with every step and output inside. Schema 2 keeps the
/// run's header in `runs`, each step in `steps` and each step's output in `outputs` (under
/// the attempt that produced it). Runbook versions, history, events, the vault and the audit
/// log are unchanged.
fn one_to_two(db: &sled::Db) -> Result<(), StoreError> {
    let runs = db.open_tree("runs")?;
    let steps = db.open_tree("steps")?;
    let outputs = db.open_tree("outputs")?;
    let fail = |reason: String| StoreError::Migration { from: 1, reason };
    for entry in runs.iter() {
        let (key, raw) = entry?;
        let run_id = String::from_utf8_lossy(&key).into_owned();
        let mut run: Value = serde_json::from_slice(&raw)
            .map_err(|err| fail(format!("run {run_id} does not decode: {err}")))?;
        let Some(fields) = run.as_object_mut() else {
            return Err(fail(format!("run {run_id} is not a JSON object")));
        };
        // A header without steps was migrated already (a crash came before the version bump).
        let Some(Value::Array(run_steps)) = fields.remove("steps") else {
            continue;
        };
        for (index, mut step) in run_steps.into_iter().enumerate() {
            let attempts = step.get("attempts").and_then(Value::as_u64).unwrap_or(0);
            let attempts = u32::try_from(attempts).map_err(|_| {
                fail(format!(
                    "run {run_id}: step {index} has {attempts} attempts"
                ))
            })?;
            if let Some(output) = step
                .as_object_mut()
                .and_then(|step| step.remove("output"))
                .filter(|output| !output.is_null())
            {
                outputs.insert(
                    output_key(&run_id, index, attempts),
                    serde_json::to_vec(&output)?,
                )?;
            }
            steps.insert(step_key(&run_id, index), serde_json::to_vec(&step)?)?;
        }
        // Written last: until then the old record still holds every step.
        runs.insert(key, serde_json::to_vec(&run)?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use crate::store::{RunStatus, StepStatus, Store};

    /// A run as schema 1 stored it: every step and output inside one record.
    fn v1_run(id: &str) -> serde_json::Value {
        json!({
            "id": id, "runbook": "deploy", "version": "abc", "status": "completed",
            "params": { "env": "staging" },
            "steps": [
                { "id": "build", "uses": "shell", "status": "completed", "attempts": 2,
                  "output": { "stdout": "ok\n" }, "error": null, "started_at": 5,
                  "finished_at": 6, "approval": null,
                  "history": [{ "attempt": 1, "started_at": 1, "finished_at": 2, "error": "boom" },
                              { "attempt": 2, "started_at": 5, "finished_at": 6, "error": null }] },
                { "id": "skip", "uses": "shell", "status": "skipped", "attempts": 0,
                  "output": null, "error": null, "started_at": 0, "finished_at": 7,
                  "approval": null }
            ],
            "created_at": 1, "started_at": 1, "finished_at": 7, "error": null
        })
    }

    #[test]
    fn a_schema_1_directory_keeps_every_run_step_and_output() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = sled::open(dir.path()).unwrap();
            db.open_tree("meta")
                .unwrap()
                .insert("schema_version", b"1")
                .unwrap();
            let runs = db.open_tree("runs").unwrap();
            for id in ["01A", "01B"] {
                runs.insert(id, serde_json::to_vec(&v1_run(id)).unwrap())
                    .unwrap();
            }
            let event = json!({ "run_id": "01A", "seq": 1, "at": 1,
                "kind": { "type": "run_status", "status": "completed", "error": null } });
            let mut key = b"01A/".to_vec();
            key.extend(1u64.to_be_bytes());
            db.open_tree("events")
                .unwrap()
                .insert(key, serde_json::to_vec(&event).unwrap())
                .unwrap();
            db.flush().unwrap();
        }
        for _ in 0..2 {
            // Opening twice: the second open finds schema 2 and changes nothing.
            let store = Store::open(dir.path()).unwrap();
            for id in ["01A", "01B"] {
                let run = store.run(id).unwrap().unwrap();
                assert_eq!(run.status, RunStatus::Completed);
                assert_eq!(run.params["env"], "staging");
                assert_eq!(run.steps.len(), 2);
                let build = &run.steps[0];
                assert_eq!(
                    (build.id.as_str(), build.status, build.attempts),
                    ("build", StepStatus::Completed, 2)
                );
                assert_eq!(build.output, Some(json!({ "stdout": "ok\n" })));
                assert_eq!(build.history.len(), 2);
                assert_eq!(run.steps[1].status, StepStatus::Skipped);
                assert_eq!(run.steps[1].output, None);
                let (attempt, raw) = store.step_output(id, "build", None, None).unwrap().unwrap();
                assert_eq!(attempt, 2);
                assert_eq!(
                    serde_json::from_slice::<serde_json::Value>(&raw).unwrap()["stdout"],
                    "ok\n"
                );
            }
            assert_eq!(store.events_after("01A", 0).unwrap().len(), 1);
            assert_eq!(
                store
                    .list_runs(&Default::default(), None, 10)
                    .unwrap()
                    .len(),
                2
            );
        }
    }

    #[test]
    fn a_directory_from_a_newer_runbookd_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = sled::open(dir.path()).unwrap();
            db.open_tree("meta")
                .unwrap()
                .insert("schema_version", b"99")
                .unwrap();
            db.flush().unwrap();
        }
        let err = Store::open(dir.path()).err().unwrap();
        assert!(
            err.to_string().contains("newer runbookd (schema 99)"),
            "{err}"
        );
    }
}
