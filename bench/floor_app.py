"""The ingest benchmark's floor: a bare FastAPI endpoint that reads the body and answers 202."""

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

app = FastAPI()


@app.post("/v1/items")
async def accept(request: Request) -> JSONResponse:
    await request.body()
    return JSONResponse({"id": "-", "state": "queued"}, status_code=202)
