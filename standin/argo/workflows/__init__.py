"""Argo Workflows' controller and executor, locally: run a submitted Workflow against its
WorkflowTemplate from build/pipelines.

A harness for our own manifests, not a replacement for Argo. It does what the controller and
argoexec do with the fields our templates use, and refuses (`Unsupported`, naming the field)
anything else. One concern a module:

- model: errors, node ids (Argo's NodeID), results, the fields implemented;
- templating: `{{...}}` substitution and `{{=sprig.b64enc(<variable>)}}`;
- scheduling: the DAG, `depends` expressions, Omitted nodes, the DAG phase from its leaves;
- pods: the Pod the controller creates for a step (createWorkflowPod, setupServiceAccount), and
  the scheduler's node for it;
- executor: that Pod's life in the stand-in cluster: started by the kubelet (FakeKube.start_pod),
  argoexec init, main as a subprocess, argoexec wait reporting a WorkflowTaskResult;
- retries: retryStrategy (limit, retryPolicy, expression on lastRetry, Go durations, backoff);
- sync: workflow-level mutexes and ConfigMap semaphores (a Workflow waits Pending, queued);
- runner: LocalRunner, tying them together and keeping the Workflow object in the API current.

Every public name is re-exported here.
"""

from standin.argo.workflows.model import (
    Attempt,
    RunResult,
    TaskRun,
    Unsupported,
    WorkflowError,
    node_id,
)
from standin.argo.workflows.executor import KUBELET_DEADLINE, WORKFLOW_DEADLINE, map_path, termination_message
from standin.argo.workflows.pods import NO_EXECUTOR_ACCOUNT, PodRefused, WorkflowContext, build_pod, pod_name
from standin.argo.workflows.retries import RetryStrategy, eval_retry_expression, parse_duration
from standin.argo.workflows.runner import GROUP, PLURAL, VERSION, LocalRunner
from standin.argo.workflows.scheduling import Dag, depends_tasks, eval_depends, parse_depends
from standin.argo.workflows.templating import substitute

__all__ = [
    "Attempt", "Dag", "GROUP", "KUBELET_DEADLINE", "LocalRunner", "NO_EXECUTOR_ACCOUNT", "PLURAL", "PodRefused",
    "RetryStrategy", "RunResult", "TaskRun", "Unsupported", "VERSION", "WORKFLOW_DEADLINE", "WorkflowContext",
    "WorkflowError", "build_pod", "depends_tasks", "eval_depends", "eval_retry_expression", "map_path", "node_id",
    "parse_depends", "parse_duration", "pod_name", "substitute", "termination_message",
]
