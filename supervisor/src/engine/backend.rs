//! The engine as the API's `Backend`: state, runs, submit (through
//! admission), confirm and cancel, output paths, events and metrics.
use super::{admission, confirm_cancel, metrics, new_run_id, output, Engine};
use crate::audit::AuditRecord;
use crate::error::SupervisorError;
use crate::model::{
    ApiFailure, Backend, Event, NodeState, RunRecord, ServiceState, Stream, SubmitRequest,
};
use crate::store::{NewNode, NewRun};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use tokio::sync::broadcast;

fn internal(e: &SupervisorError) -> ApiFailure {
    ApiFailure::Internal(crate::error::error_chain(e))
}

impl Backend for Engine {
    fn ready(&self) -> bool {
        self.shared.ready.load(Ordering::SeqCst)
    }

    fn state(&self) -> Result<ServiceState, ApiFailure> {
        let (running, queued, awaiting) = {
            let inner = self.shared.inner();
            let mut q = 0;
            let mut a = 0;
            for r in inner.runs.values() {
                for n in r.nodes.values() {
                    match n.state {
                        NodeState::Queued => q += 1,
                        NodeState::AwaitingConfirmation => a += 1,
                        _ => {}
                    }
                }
            }
            (inner.running, q, a)
        };
        let runs_total = self.shared.store().count_runs().map_err(|e| internal(&e))?;
        Ok(ServiceState {
            version: env!("CARGO_PKG_VERSION").into(),
            ready: self.ready(),
            draining: self.shared.draining.load(Ordering::SeqCst),
            parallelism: self.shared.cfg.parallelism,
            running_nodes: running,
            queued_nodes: queued,
            awaiting_confirmation: awaiting,
            runs_total,
            state_dir: self.shared.cfg.state_dir.display().to_string(),
        })
    }

    fn list_runs(&self, limit: usize) -> Result<Vec<RunRecord>, ApiFailure> {
        let mut runs = self.shared.store().runs(limit).map_err(|e| internal(&e))?;
        for r in &mut runs {
            self.shared.persist.overlay(r);
        }
        Ok(runs)
    }

    /// The stored run with any state writes still waiting for the store
    /// (a full disk) laid over it: what the engine knows.
    fn get_run(&self, id: &str) -> Result<RunRecord, ApiFailure> {
        let mut r = self
            .shared
            .store()
            .run(id)
            .map_err(|e| internal(&e))?
            .ok_or_else(|| ApiFailure::NotFound(format!("no run {id:?}")))?;
        self.shared.persist.overlay(&mut r);
        Ok(r)
    }

    fn submit(&self, req: SubmitRequest) -> Result<RunRecord, ApiFailure> {
        if self.shared.draining.load(Ordering::SeqCst) {
            return Err(ApiFailure::Unavailable(
                "the supervisor is shutting down".into(),
            ));
        }
        if let Some(why) = self.shared.persist.refusal() {
            return Err(ApiFailure::Unavailable(why));
        }
        let id = new_run_id();
        let admitted = admission::admit(&self.shared, &id, &req).map_err(|e| {
            // A refusal before anything exists still leaves an audit line.
            self.shared.audit(AuditRecord {
                kind: "refusal".into(),
                flow: Some(req.flow_path.clone()),
                reason: Some(e.clone()),
                ..AuditRecord::default()
            });
            ApiFailure::BadRequest(e)
        })?;
        let new = NewRun {
            id: id.clone(),
            flow: admitted.flow.name.to_string(),
            flow_path: req.flow_path.clone(),
            flow_json: serde_json::to_string(&*admitted.flow)
                .map_err(|e| ApiFailure::Internal(e.to_string()))?,
            pre_approved: req.yes,
            nodes: admitted
                .flow
                .nodes
                .iter()
                .map(|n| NewNode {
                    id: n.id.to_string(),
                    needs: n.needs.iter().map(ToString::to_string).collect(),
                    profile: n.profile.clone(),
                    argv: n.argv(),
                    findings: admitted
                        .findings
                        .get(n.id.as_str())
                        .cloned()
                        .unwrap_or_default(),
                })
                .collect(),
        };
        {
            let mut inner = self.shared.inner();
            let ev = self
                .shared
                .store()
                .insert_run(&new)
                .map_err(|e| internal(&e))?;
            inner.submitted += 1;
            inner.runs.insert(id.clone(), admitted.into_mem(req.yes));
            inner.ws_queue.push_back(id.clone());
            self.shared.publish(ev);
            drop(inner);
        }
        self.shared.wake.notify_one();
        self.get_run(&id)
    }

    fn confirm(&self, run: &str, node: &str) -> Result<(), ApiFailure> {
        confirm_cancel::confirm(&self.shared, run, node)?;
        self.shared.wake.notify_one();
        Ok(())
    }

    fn cancel(&self, run: &str, node: Option<&str>) -> Result<(), ApiFailure> {
        confirm_cancel::cancel(&self.shared, run, node)?;
        self.shared.wake.notify_one();
        Ok(())
    }

    fn output_path(&self, run: &str, node: &str, stream: Stream) -> Result<PathBuf, ApiFailure> {
        let r = self.get_run(run)?;
        if !r.nodes.iter().any(|n| n.id == node) {
            return Err(ApiFailure::NotFound(format!(
                "run {run} has no node {node:?}"
            )));
        }
        // Ids were validated on submit, so these are plain names.
        Ok(output::output_file(
            &self.shared.run_dir(&r.id).join(node),
            stream.as_str(),
        ))
    }

    fn events_since(&self, after_seq: i64, limit: usize) -> Result<Vec<Event>, ApiFailure> {
        self.shared
            .store()
            .events_since(after_seq, limit)
            .map_err(|e| internal(&e))
    }

    fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.shared.events.subscribe()
    }

    fn metrics(&self) -> String {
        metrics::metrics(&self.shared)
    }

    fn audit(&self, q: crate::audit::Query) -> Result<Vec<crate::audit::AuditRecord>, ApiFailure> {
        self.flush_audit();
        crate::audit::read(&self.audit_dir(), &q).map_err(|e| internal(&e))
    }

    fn gc(&self, req: crate::model::GcRequest) -> Result<Vec<crate::model::GcEntry>, ApiFailure> {
        let age = i64::try_from(req.older_than_ms).unwrap_or(i64::MAX);
        let cfg = &self.shared.cfg;
        crate::gc::collect(
            &cfg.state_dir,
            &cfg.workspace_root,
            crate::store::now_ms().saturating_sub(age),
            req.dry_run,
        )
        .map_err(|e| internal(&e))
    }
}
