"""The web app of ``asrkit serve``: one page to search an indexed archive by voice,
listen to the hits and (with a model) read what is said around them.

Routes; every error answers JSON ``{"error": message}``::

    GET  /                  the page (asrkit/serve/web/index.html; its files under /static/)
    GET  /api/info          index name, recordings (name, duration), model, upload limit
    POST /api/search        multipart ``audio`` (a spoken example), ``top`` → hits
    POST /api/search-span   JSON {file, start, end, top}: a stretch of a recording → hits
    GET  /api/audio         ?file=&start=&end= → WAV of that stretch, read on demand
    GET  /api/picture       ?file=&start=&end= → PNG of that stretch
    POST /api/picture       multipart ``audio`` → PNG
    GET  /api/transcript    ?file=&start=&end=&context= → {text, start, end}
    POST /api/transcribe    multipart ``audio`` → {text, duration}
    POST /api/live          start live transcription (a forward-only model) → {session}
    POST /api/live/{id}     body: raw 16-bit mono PCM at 16 kHz → {final, partial, seconds}
    POST /api/live/{id}/end → the last words, all final, and the whole text

``file`` is always a recording's name in the index; anything else is refused (404), and
a recording whose file now resolves elsewhere (a swapped-in symlink) is refused (403).
All index, model and drawing work runs on one worker thread (SQLite connections
belong to their thread), so the event loop stays free while a search runs.
"""

from __future__ import annotations

import asyncio
import functools
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Callable, Sequence, TypeVar

from fastapi import FastAPI, File, Form, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware

from .body_limit import BodyLimit
from .live import LiveSessions, UnknownSession
from .service import (CONTEXT_SECONDS, ArchiveService, FileChanged, NotInIndex,
                              picture_png, wav_bytes)
from ..audio import AUDIO_EXTENSIONS, SAMPLE_RATE, load_audio
from ..errors import AsrkitError, AudioError, ConfigError

WEB_DIR = Path(__file__).parent / "web"
MAX_TOP = 100
FORM_OVERHEAD = 64 * 1024  # bytes a multipart body may carry beyond the file itself
T = TypeVar("T")


class UploadTooLarge(AsrkitError):
    """An upload over the server's limit (answered with 413)."""


class SpanQuery(BaseModel):
    file: str
    start: float
    end: float
    top: int = Field(10, ge=1, le=MAX_TOP)


def create_app(index_dir: str | os.PathLike, model: str | os.PathLike | None = None,
               max_upload_mb: float = 20.0, allowed_hosts: Sequence[str] | None = None,
               ) -> FastAPI:
    """The app serving the index at ``index_dir``; ``model`` (a path or bundled name
    such as ``"an4"``) enables transcripts. ``allowed_hosts``: the only Host headers
    answered (None = any). Raises :class:`AsrkitError` at once for a missing index or
    an unreadable model."""
    if max_upload_mb <= 0:
        raise ConfigError(f"the upload limit must be positive, not {max_upload_mb:g} MB")
    worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="asrkit-serve")
    try:
        service = worker.submit(ArchiveService, index_dir, model).result()
    except BaseException:
        worker.shutdown()
        raise

    async def run(fn: Callable[..., T], *args) -> T:
        return await asyncio.get_running_loop().run_in_executor(
            worker, functools.partial(fn, *args))

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        await run(service.close)
        worker.shutdown()

    app = FastAPI(title="asrkit search", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.service = service
    limit = int(max_upload_mb * 1024 * 1024)
    _add_error_handlers(app)
    _add_body_limit(app, limit)
    _add_origin_checks(app, allowed_hosts)
    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")
    _add_page_routes(app, service, run, max_upload_mb)
    _add_search_routes(app, service, run, limit)
    _add_media_routes(app, service, run, limit)
    _add_recognition_routes(app, service, run, limit)
    return app


def _add_page_routes(app: FastAPI, service: ArchiveService, run,
                     max_upload_mb: float) -> None:
    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(WEB_DIR / "index.html")

    def describe() -> dict:
        return {"index": service.name, "segments": service.segment_count(),
                "model": service.model_name, "max_upload_mb": max_upload_mb,
                "live": service.live is not None,
                "recordings": [{"name": r.name, "duration": round(r.duration, 3)}
                               for r in service.recordings()]}

    @app.get("/api/info")
    async def info():
        return await run(describe)


def _add_search_routes(app: FastAPI, service: ArchiveService, run, limit: int) -> None:
    @app.post("/api/search")
    async def search_upload(audio: UploadFile = File(...),
                            top: int = Form(10, ge=1, le=MAX_TOP)):
        name, data = await _read_upload(audio, limit)
        started = time.perf_counter()
        wave = await run(_on_upload, name, data, load_audio)
        hits = await run(service.search_wave, name, wave, top)
        return _hits_json(name, len(wave) / SAMPLE_RATE, hits, started)

    @app.post("/api/search-span")
    async def search_span(query: SpanQuery):
        started = time.perf_counter()
        hits = await run(service.search_span, query.file, query.start, query.end, query.top)
        name = f"{query.file}:{query.start:g}-{query.end:g}"
        return _hits_json(name, query.end - query.start, hits, started)


def _add_media_routes(app: FastAPI, service: ArchiveService, run, limit: int) -> None:
    @app.get("/api/audio")
    async def audio_span(file: str, start: float, end: float):
        wave = await run(service.read_span, file, start, end)
        return Response(await run(wav_bytes, wave), media_type="audio/wav")

    @app.get("/api/picture")
    async def picture_span(file: str, start: float, end: float):
        wave = await run(service.read_span, file, start, end)
        return Response(await run(picture_png, wave), media_type="image/png")

    @app.post("/api/picture")
    async def picture_upload(audio: UploadFile = File(...)):
        name, data = await _read_upload(audio, limit)
        wave = await run(_on_upload, name, data, load_audio)
        return Response(await run(picture_png, wave), media_type="image/png")


def _add_recognition_routes(app: FastAPI, service: ArchiveService, run, limit: int) -> None:
    @app.get("/api/transcript")
    async def transcript_span(file: str, start: float, end: float,
                              context: float = Query(CONTEXT_SECONDS, ge=0.0, le=10.0)):
        result = await run(service.transcribe_span, file, start, end, context)
        return {"text": result.text, "start": result.start, "end": result.end}

    @app.post("/api/transcribe")
    async def transcribe_upload(audio: UploadFile = File(...)):
        name, data = await _read_upload(audio, limit)

        def transcribe(path: Path) -> dict:
            wave = load_audio(path)  # a clear error for a bad file, before the model runs
            return {"text": service.transcribe_file(path, name),
                    "duration": round(len(wave) / SAMPLE_RATE, 3)}

        return await run(_on_upload, name, data, transcribe)

    def live() -> LiveSessions:
        if service.live is None:
            raise ConfigError("live transcription needs a forward-only model; start the "
                              "server with --model naming one")
        return service.live

    @app.post("/api/live")
    async def live_start():
        return {"session": await run(lambda: live().start())}

    @app.post("/api/live/{session}")
    async def live_feed(session: str, request: Request):
        data = await request.body()
        return await run(lambda: live().feed(session, data))

    @app.post("/api/live/{session}/end")
    async def live_end(session: str):
        return await run(lambda: live().finish(session))


async def _read_upload(upload: UploadFile, limit: int) -> tuple[str, bytes]:
    """The upload's file name (without folders) and bytes, refused when over ``limit``."""
    name = Path(upload.filename or "upload").name or "upload"
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise UploadTooLarge(f"{name}: the upload is larger than the server's limit of "
                             f"{limit / 2**20:g} MB; send a shorter recording")
    if not data:
        raise AudioError(f"{name}: the upload is empty; choose an audio file")
    return name, data


def _on_upload(name: str, data: bytes, use: Callable[[Path], T]) -> T:
    """``use(path)`` of the upload saved to a private temporary file; error messages
    name the upload, not the temporary path."""
    suffix = Path(name).suffix.lower()
    with tempfile.TemporaryDirectory(prefix="asrkit-upload-") as tmp:
        path = Path(tmp) / ("upload" + (suffix if suffix in AUDIO_EXTENSIONS else ""))
        path.write_bytes(data)
        try:
            return use(path)
        except AsrkitError as e:
            raise type(e)(str(e).replace(str(path), name)) from None


def _hits_json(query: str, seconds: float, hits, started: float) -> dict:
    return {"query": {"name": query, "duration": round(seconds, 3)},
            "seconds": round(time.perf_counter() - started, 4),
            "hits": [{"rank": rank, "file": h.source, "start": h.start, "end": h.end,
                      "score": round(h.score, 4)} for rank, h in enumerate(hits, 1)]}


def _add_error_handlers(app: FastAPI) -> None:
    statuses = {NotInIndex: 404, FileChanged: 403, UploadTooLarge: 413, UnknownSession: 404}

    @app.exception_handler(AsrkitError)
    async def asrkit_error(request: Request, e: AsrkitError):
        return JSONResponse({"error": str(e)}, status_code=statuses.get(type(e), 400))

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, e: RequestValidationError):
        problems = [f"{'.'.join(str(p) for p in err['loc'][1:]) or 'request'}: {err['msg']}"
                    for err in e.errors()]
        return JSONResponse({"error": "; ".join(problems)}, status_code=400)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, e: HTTPException):
        return JSONResponse({"error": str(e.detail)}, status_code=e.status_code)


def _add_body_limit(app: FastAPI, limit: int) -> None:
    """Bodies over the limit (plus the multipart form's own bytes) are refused on the
    bytes received, with or without Content-Length, before anything is written."""
    app.add_middleware(BodyLimit, limit=limit + FORM_OVERHEAD,
                       message=f"the upload is larger than the server's limit of "
                               f"{limit / 2**20:g} MB; send a shorter recording")


def _add_origin_checks(app: FastAPI, allowed_hosts: Sequence[str] | None) -> None:
    """Only this page may use the server. A web page elsewhere could otherwise embed
    the archive's audio (refused by the browser's Sec-Fetch-Site header) or read it by
    pointing its own host name at 127.0.0.1 (refused by the Host check)."""
    if allowed_hosts is not None:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts),
                           www_redirect=False)

    @app.middleware("http")
    async def refuse_other_sites(request: Request, call_next):
        if request.headers.get("sec-fetch-site") == "cross-site":
            return JSONResponse({"error": "requests from other web sites are refused"},
                                status_code=403)
        return await call_next(request)
