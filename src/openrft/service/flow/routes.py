"""Every router of SeekrFlow's API, for `app.py` to mount."""

from fastapi import APIRouter

from openrft.service.flow import deployments, files, fine_tunes, inference

ROUTERS: tuple[APIRouter, ...] = (
    files.router,
    fine_tunes.router,
    deployments.router,
    inference.router,
)
