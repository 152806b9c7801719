#!/usr/bin/env bash
# A CI job's deployment step: apply the fleet's manifests, then wait for the rollout of each
# changed deployment; on failure print why (the health gate's figures) and fail the job.
#   deploy/examples/rollout-pipeline.sh MANIFEST DEPLOYMENT [DEADLINE]
# tenonctl finds the controller and token through its config (--config, $TENONCTL_CONFIG).
set -euo pipefail
manifest=${1:?manifest file or folder}
deployment=${2:?deployment to wait for}
deadline=${3:-10m}
tenonctl=${TENONCTL:-tenonctl}

"$tenonctl" apply -f "$manifest"
status=0
"$tenonctl" rollout status "$deployment" --deadline "$deadline" || status=$?
case $status in
  0) echo "rollout of $deployment complete" ;;
  6) echo "rollout of $deployment HALTED: devices not yet updated keep the previous revision" >&2 ;;
  7) echo "rollout of $deployment ROLLED BACK to the previous revision" >&2 ;;
  8) echo "rollout of $deployment not done within $deadline" >&2 ;;
  *) echo "tenonctl rollout status failed ($status)" >&2 ;;
esac
if [ "$status" -ne 0 ]; then
  "$tenonctl" describe deployment "$deployment" >&2 || true
fi
exit "$status"
