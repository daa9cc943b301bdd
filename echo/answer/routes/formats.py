"""httpbin's response formats family: fixed documents, images, links and small generated values.

/html, /json, /xml, /robots.txt, /deny, /encoding/utf8, /forms/post and the
images are httpbin's own files, served from `assets/` (httpbin is MIT / ISC
licensed; its notices are kept there); none of them holds request data.
/links builds its page from its two numbers only. Every body keeps Echo's
`Content-Security-Policy: sandbox` and nosniff (body_answer adds them), and
/base64, whose text is the caller's, is text/plain rather than httpbin's
text/html, so a decoded page cannot pass for one of Echo's.
"""

from __future__ import annotations

import base64
import binascii
import functools
import uuid
from importlib import resources

from ...model.http import HTML_TYPE
from ...model.records import RequestRecord
from ..answer import Answer
from .arguments import at_most, path_int, refusing
from .common import body_answer, json_answer
from .table import RouteLimits, route

TEXT = "text/plain"
BASE64_HINT = b"Incorrect Base64 data try: SFRUUEJJTiBpcyBhd2Vzb21l"
ROBOTS_TXT = b"User-agent: *\nDisallow: /deny\n"
# httpbin's /image order: the first of these the Accept header names (as a substring) wins.
IMAGES = {
    "webp": ("wolf_1.webp", "image/webp"),
    "svg": ("svg_logo.svg", "image/svg+xml"),
    "jpeg": ("jackal.jpg", "image/jpeg"),
    "png": ("pig_icon.png", "image/png"),
}
_BY_ACCEPT = (("image/webp", "webp"), ("image/svg+xml", "svg"), ("image/jpeg", "jpeg"),
              ("image/png", "png"), ("image/*", "png"))
# httpbin's 406 body for /image, byte for byte (json.dumps, no final newline).
NOT_ACCEPTABLE = (b'{"message": "Client did not request a supported media type.", "accept": '
                  b'["image/webp", "image/svg+xml", "image/jpeg", "image/png", "image/*"]}')


@functools.cache
def asset(name: str) -> bytes:
    return resources.files(__package__).joinpath("assets").joinpath(name).read_bytes()


def _file(name: str, content_type: str) -> Answer:
    return body_answer(200, asset(name), content_type)


@route("/html", {"GET"})
def html(record: RequestRecord, params: dict[str, str], limits: RouteLimits) -> Answer:
    return _file("moby.html", HTML_TYPE)


@route("/json", {"GET"})
def json_document(record: RequestRecord, params: dict[str, str], limits: RouteLimits) -> Answer:
    return json_answer({"slideshow": {
        "author": "Yours Truly",
        "date": "date of publication",
        "slides": [
            {"title": "Wake up to WonderWidgets!", "type": "all"},
            {
                "items": ["Why <em>WonderWidgets</em> are great", "Who <em>buys</em> WonderWidgets"],
                "title": "Overview",
                "type": "all",
            },
        ],
        "title": "Sample Slide Show",
    }})


@route("/xml", {"GET"})
def xml(record: RequestRecord, params: dict[str, str], limits: RouteLimits) -> Answer:
    return _file("sample.xml", "application/xml")


@route("/robots.txt", {"GET"})
def robots(record: RequestRecord, params: dict[str, str], limits: RouteLimits) -> Answer:
    return body_answer(200, ROBOTS_TXT, TEXT)


@route("/deny", {"GET"})
def deny(record: RequestRecord, params: dict[str, str], limits: RouteLimits) -> Answer:
    return _file("deny.txt", TEXT)


@route("/encoding/utf8", {"GET"})
def utf8(record: RequestRecord, params: dict[str, str], limits: RouteLimits) -> Answer:
    return _file("UTF-8-demo.txt", HTML_TYPE)


@route("/forms/post", {"GET"})
def forms_post(record: RequestRecord, params: dict[str, str], limits: RouteLimits) -> Answer:
    return _file("forms-post.html", HTML_TYPE)


@route("/uuid", {"GET"})
def uuid4(record: RequestRecord, params: dict[str, str], limits: RouteLimits) -> Answer:
    return json_answer({"uuid": str(uuid.uuid4())})


@route("/base64/{value}", {"GET"})
def decode_base64(record: RequestRecord, params: dict[str, str], limits: RouteLimits) -> Answer:
    try:
        # URL-safe alphabet; like httpbin, characters outside it are skipped, not refused.
        body = base64.urlsafe_b64decode(params["value"].encode("utf-8"))
        body.decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        body = BASE64_HINT
    return body_answer(200, body, f"{TEXT}; charset=utf-8")


def _links_count(params: dict[str, str], limits: RouteLimits) -> int:
    count = path_int(params, "n")
    at_most("n", count, limits.max_n, "max_httpbin_n")  # httpbin clamps to 200
    return max(1, count)  # httpbin's floor: /links/0 has one link


@route("/links/{n}/{offset}", {"GET"})
@refusing
def link_page(record: RequestRecord, params: dict[str, str], limits: RouteLimits) -> Answer:
    count = _links_count(params, limits)
    offset = path_int(params, "offset")
    links = "".join(f"{i} " if i == offset else f"<a href='/links/{count}/{i}'>{i}</a> " for i in range(count))
    page = f"<html><head><title>Links</title></head><body>{links}</body></html>"
    return body_answer(200, page.encode("ascii"), HTML_TYPE)


@route("/links/{n}", {"GET"})
@refusing
def links(record: RequestRecord, params: dict[str, str], limits: RouteLimits) -> Answer:
    count = path_int(params, "n")
    _links_count(params, limits)
    target = f"/links/{count}/0"
    # Flask's redirect page, as httpbin sends it.
    page = ("<!doctype html>\n<html lang=en>\n<title>Redirecting...</title>\n<h1>Redirecting...</h1>\n"
            f'<p>You should be redirected automatically to the target URL: <a href="{target}">{target}</a>. '
            "If not, click the link.\n")
    return body_answer(302, page.encode("ascii"), HTML_TYPE, [("Location", target)])


@route("/image", {"GET"})
def image(record: RequestRecord, params: dict[str, str], limits: RouteLimits) -> Answer:
    accept = record.header("Accept")
    if accept is None:
        return _image("png")  # httpbin's default without Accept
    lowered = accept.lower()
    kind = next((kind for media, kind in _BY_ACCEPT if media in lowered), None)
    if kind is None:
        return body_answer(406, NOT_ACCEPTABLE, "application/json")
    return _image(kind)


def _image(kind: str) -> Answer:
    name, content_type = IMAGES[kind]
    return _file(name, content_type)


def _image_route(kind: str) -> None:
    @route(f"/image/{kind}", {"GET"})
    def one_image(record: RequestRecord, params: dict[str, str], limits: RouteLimits) -> Answer:
        return _image(kind)


for _kind in IMAGES:
    _image_route(_kind)
