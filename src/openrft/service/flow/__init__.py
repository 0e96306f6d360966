"""SeekrFlow's API on `openrft serve`: the routes the `seekrai` SDK (0.35) calls, answered from
the same store, workers, tenancy and quotas as the OpenAI routes.

- `files.py`: `/v1/flow/files` and `/v1/flow/bulk_files` (the project's files);
- `fine_tunes.py`: `/v1/flow/fine-tune` and `/v1/flow/fine-tunes` (OpenRFT jobs, each with a
  SeekrFlow id `ft-X` beside its OpenAI id `ftjob-X`), with `placement.py` mapping
  `infrastructure_config` onto what the workers can run;
- `deployments.py`: `/v1/flow/projects`, `/v1/flow/deployments`, `/v1/flow/models`;
- `inference.py`: `/v1/inference/chat/completions`, through the model servers;
- `training.py`: a SeekrFlow `TrainingConfig` as a job (also what OpenAI's job route does with
  one posted as its whole body);
- `schemas.py`: the wire objects, with the SDK's names and enums;
- `routes.py`: the routers, for `app.py` to mount.

The SDK authenticates with the bare key (`Authorization: ork-…`, `deps.bearer_key`), and errors
on these paths come in SeekrFlow's form (`api_errors.error_body`).
"""
