"""The prompt catalogue and the prompt build: what the hotline says, as files Asterisk plays.

    load_catalogue(path=None)          → Catalogue (id → Prompt), validated, with district_<code> entries
    catalogue.path(id, settings)       → <prompts_dir>/<id>, the file base Asterisk plays (no extension)
    build_prompts(settings)            → BuildReport: every prompt as <prompts_dir>/<id>.wav
    prompt_exists(settings, id)        → whether the built file is there

The catalogue is data (`ivr/data/prompts.toml`): one `[prompts.<id>]` table per prompt with
`text` and `used_by` (ivr, dialplan, queue). To it are added one `district_<code>` prompt per
district of the configured gazetteer (text: the district's name), so the IVR's district menu can
say the names; a TOML entry with the same id replaces the generated one (a spelling that the
synthesiser says better, for instance).

Build: a recorded studio file `<studio_prompts_dir>/<id>.wav` wins; otherwise espeak-ng speaks
the text. Either way sox converts to what Asterisk's `wav` format is: 8 kHz, mono, 16-bit signed
PCM. On Debian 12 espeak-ng's `cmn` voice reads most characters as English-spelled pinyin;
`cmn-latn-pinyin` (listed by `espeak-ng --voices=cmn` where installed) says them in Mandarin,
so it is used when present. `<prompts_dir>/manifest.json` records, per prompt, a hash of what
it was built from (text + voice, or the studio file), so an unchanged prompt is skipped and a
changed one rebuilt. Files are written to a temporary name and renamed into place; tools are run
with argument lists, never through a shell.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
import tomllib
import wave
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from hotline.settings import Settings

log = logging.getLogger(__name__)

ID_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,40}$")
MAX_TEXT = 300
USED_BY = frozenset({"ivr", "dialplan", "queue"})
ENTRY_KEYS = frozenset({"text", "used_by"})
SAMPLE_RATE, CHANNELS, SAMPLE_WIDTH = 8000, 1, 2     # Asterisk `wav`: 8 kHz mono 16-bit signed linear
FORMAT = "wav-8000-1-s16/1"     # part of every manifest entry: a change of output format rebuilds all
MANIFEST = "manifest.json"
PINYIN_VOICE, PLAIN_VOICE = "cmn-latn-pinyin", "cmn"
INSTALL_HINT = "apt-get install espeak-ng sox"
TOOL_TIMEOUT = 120.0            # seconds for one espeak-ng or sox run
FILE_MODE = 0o644               # built files are read by Asterisk's own user

# progress(items, total, label) → the same items (e.g. a tqdm bar), as `routing.import_gazetteer` takes it
Progress = Callable[[Iterable[Any], int, str], Iterable[Any]]


class PromptError(ValueError):
    """A catalogue entry is wrong, a prompt id is unknown or unsafe, or a tool is missing."""


class UnknownPromptError(PromptError, KeyError):
    """No prompt with this id (a KeyError too, so `id in catalogue` and `.get` work)."""

    def __str__(self) -> str:  # KeyError would print the message quoted
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class Prompt:
    id: str
    text: str
    used_by: str


def _check_id(prompt_id: object) -> str:
    if not isinstance(prompt_id, str) or not ID_PATTERN.match(prompt_id):
        raise PromptError(f"prompt id {prompt_id!r} is not valid: it must match {ID_PATTERN.pattern} "
                          "(it becomes a file name)")
    return prompt_id


def _prompts_dir(settings: Settings) -> Path:
    base = settings.prompts_dir if settings.prompts_dir is not None else Path(settings.data_dir) / "prompts"
    return Path(os.path.abspath(base))


HOLD_FOLDER = "moh"          # <prompts_dir>/moh: the queues' music on hold (musiconhold.conf's default class)
HOLD_FILE = "hold.wav"
# a calm arpeggio (Hz), plucked; repeated to about half a minute
HOLD_NOTES = (523.25, 659.25, 783.99, 659.25, 587.33, 698.46, 880.00, 698.46,
              523.25, 659.25, 783.99, 1046.5, 783.99, 659.25, 587.33, 523.25)


def hold_music_dir(settings: Settings) -> Path:
    return _prompts_dir(settings) / HOLD_FOLDER


def build_hold_music(settings: Settings, sox: str | None = None, force: bool = False) -> Path | None:
    """<prompts_dir>/moh/hold.wav: the studio's `moh/hold.wav` converted, or a melody made with sox, so a
    plain Asterisk without its sound packages plays something to waiting callers. None when up to date."""
    sox = sox or _tool("sox")
    folder = hold_music_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / HOLD_FILE
    studio = Path(settings.studio_prompts_dir) / HOLD_FOLDER / HOLD_FILE if settings.studio_prompts_dir else None
    if out.is_file() and not force and (studio is None or not studio.is_file()
                                        or studio.stat().st_mtime <= out.stat().st_mtime):
        return None
    fmt = ["-r", str(SAMPLE_RATE), "-c", str(CHANNELS), "-b", "16", "-e", "signed-integer"]
    with tempfile.TemporaryDirectory(prefix="hotline-moh-") as work:
        tmp = Path(work) / HOLD_FILE
        if studio is not None and studio.is_file():
            _run([sox, "-G", "-V1", str(studio), "-t", "wav", *fmt, str(tmp)], f"sox on {studio}")
        else:
            notes = []
            for i, freq in enumerate(HOLD_NOTES):
                note = Path(work) / f"n{i:02d}.wav"
                _run([sox, "-V1", "-n", *fmt, str(note), "synth", "0.6", "pluck", f"{freq}", "fade", "0.01", "0.6",
                      "0.3", "gain", "-12"], "sox (hold music)")
                notes.append(str(note))
            phrase = Path(work) / "phrase.wav"
            _run([sox, "-V1", *notes, str(phrase)], "sox (hold music)")
            _run([sox, "-V1", str(phrase), str(phrase), str(phrase), str(tmp)], "sox (hold music)")
        _check_output(tmp)
        _write_atomically(out, tmp.read_bytes())
    return out


def _target(settings: Settings, prompt_id: str, suffix: str = "") -> Path:
    """<prompts_dir>/<id><suffix>, after checking the id cannot lead anywhere else."""
    _check_id(prompt_id)
    folder = _prompts_dir(settings)
    path = folder / f"{prompt_id}{suffix}"
    if path.parent != folder:  # cannot happen with a valid id; kept as the last word on it
        raise PromptError(f"prompt id {prompt_id!r} would leave {folder}")
    return path


class Catalogue(Mapping[str, Prompt]):
    """Prompt id → Prompt, in catalogue order."""

    def __init__(self, prompts: Iterable[Prompt], source: str = "<catalogue>") -> None:
        self._prompts: dict[str, Prompt] = {}
        self.source = source
        for p in prompts:
            _check_id(p.id)
            self._prompts[p.id] = p

    def __getitem__(self, prompt_id: str) -> Prompt:
        try:
            return self._prompts[prompt_id]
        except (KeyError, TypeError):
            raise UnknownPromptError(f"no prompt {prompt_id!r} in {self.source}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._prompts)

    def __len__(self) -> int:
        return len(self._prompts)

    def path(self, prompt_id: str, settings: Settings) -> Path:
        """The file Asterisk plays for this prompt: absolute `<prompts_dir>/<id>`, without extension."""
        self[prompt_id]
        return _target(settings, prompt_id)

    def used_by(self, where: str) -> list[Prompt]:
        return [p for p in self._prompts.values() if p.used_by == where]


def packaged_catalogue_path() -> Path:
    return Path(str(resources.files("ivr").joinpath("data/prompts.toml")))


def configured_districts(settings: Settings | None = None) -> dict[str, str]:
    """District code → name for the gazetteer the settings name (Shenzhen unless configured otherwise)."""
    import routing
    from case_bridge import load_settings_gazetteer
    from hotline.settings import get_settings
    try:
        gz = load_settings_gazetteer(settings or get_settings())
    except (routing.GazetteerError, routing.DivisionError, OSError) as exc:
        raise PromptError(f"district prompts: the configured gazetteer cannot be read: {exc}") from None
    return {code: gz.name_of(code) for code in gz.district_codes}


class _Configured:
    def __repr__(self) -> str:
        return "<the configured gazetteer's districts>"


CONFIGURED = _Configured()


def _entry(source: str, prompt_id: object, body: object) -> Prompt:
    where = f"{source}: prompt {prompt_id!r}"
    if not isinstance(prompt_id, str) or not ID_PATTERN.match(prompt_id):
        raise PromptError(f"{where}: the id must match {ID_PATTERN.pattern} (lower-case letters, digits, _; "
                          "it becomes a file name)")
    if not isinstance(body, dict):
        raise PromptError(f"{where}: must be a table with text and used_by ([prompts.{prompt_id}])")
    unknown = sorted(set(body) - ENTRY_KEYS)
    if unknown:
        raise PromptError(f"{where}: unknown key(s) {', '.join(unknown)} (allowed: text, used_by)")
    text = body.get("text")
    if not isinstance(text, str) or not text.strip():
        raise PromptError(f"{where}: text is missing or empty")
    text = text.strip()
    if len(text) > MAX_TEXT:
        raise PromptError(f"{where}: text is {len(text)} characters; at most {MAX_TEXT}")
    used_by = body.get("used_by")
    if used_by not in USED_BY:
        raise PromptError(f"{where}: used_by is {used_by!r}; it must be one of {', '.join(sorted(USED_BY))}")
    return Prompt(prompt_id, text, used_by)


def load_catalogue(path: Path | str | None = None,
                   districts: Mapping[str, str] | None | _Configured = CONFIGURED) -> Catalogue:
    """Read and check a prompt catalogue (default: the packaged one); errors name the file and the entry.

    `districts`: code → name for the generated `district_<code>` prompts; by default the districts of
    the configured gazetteer, None for none.
    """
    path = Path(path) if path is not None else packaged_catalogue_path()
    source = str(path)
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except OSError as exc:
        raise PromptError(f"{source}: cannot read the prompt catalogue ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise PromptError(f"{source}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise PromptError(f"{source}: not valid TOML: {exc}") from None
    extra = sorted(set(data) - {"prompts"})
    if extra:
        raise PromptError(f"{source}: unknown top-level key(s) {', '.join(extra)}; prompts are [prompts.<id>] tables")
    table = data.get("prompts")
    if not isinstance(table, dict) or not table:
        raise PromptError(f"{source}: no prompts; write one [prompts.<id>] table per prompt")
    prompts = [_entry(source, pid, body) for pid, body in table.items()]
    if isinstance(districts, _Configured):
        districts = configured_districts()
    own = {p.id for p in prompts}
    for code, name in (districts or {}).items():
        prompt_id = f"district_{code}"
        if prompt_id in own:  # the catalogue's own wording wins
            continue
        if not ID_PATTERN.match(prompt_id):
            raise PromptError(f"district code {code!r} cannot name a prompt ({prompt_id!r} must match "
                              f"{ID_PATTERN.pattern})")
        if not isinstance(name, str) or not name.strip() or len(name.strip()) > MAX_TEXT:
            raise PromptError(f"district {code}: name {name!r} cannot be a prompt text")
        prompts.append(Prompt(prompt_id, name.strip(), "ivr"))
    return Catalogue(prompts, source)


def prompt_exists(settings: Settings, prompt_id: str) -> bool:
    """Whether `<prompts_dir>/<id>.wav` has been built (False for an id that could not be a prompt)."""
    try:
        return _target(settings, prompt_id, ".wav").is_file()
    except PromptError:
        return False


# --- build -----------------------------------------------------------------------------------------

@dataclass
class BuildReport:
    built: list[str] = field(default_factory=list)      # ids (re)built in this run
    skipped: list[str] = field(default_factory=list)    # ids already up to date
    studio: list[str] = field(default_factory=list)     # ids whose file comes from a studio recording
    voice: str | None = None                            # the espeak-ng voice (None: nothing synthesised)
    errors: dict[str, str] = field(default_factory=dict)  # id → what went wrong
    seconds: float = 0.0
    lengths: dict[str, float] = field(default_factory=dict)  # id → seconds of audio, every prompt on disk
    hold_music: str = ""                                 # what became of <prompts_dir>/moh/hold.wav

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def too_long(self) -> dict[str, float]:
        """Prompts a caller must sit through for longer than LONG_PROMPT_SECONDS."""
        return {pid: n for pid, n in self.lengths.items() if n > LONG_PROMPT_SECONDS}

    def summary(self, lengths: bool = True) -> str:
        line = (f"prompts: {len(self.built)} built, {len(self.skipped)} up to date, {len(self.studio)} from studio "
                f"recordings, {len(self.errors)} failed; voice {self.voice or '-'}; {self.seconds:.1f} s")
        out = [line, *(f"  {pid}: {msg}" for pid, msg in sorted(self.errors.items()))]
        if self.hold_music:
            out.append(f"music on hold: {self.hold_music}")
        if lengths and self.lengths:
            out.append("lengths (flagged: longer than %g s — callers wait through them):" % LONG_PROMPT_SECONDS)
            out += [f"  {pid:<24} {n:5.1f} s{'  ← too long' if n > LONG_PROMPT_SECONDS else ''}"
                    for pid, n in self.lengths.items()]
        return "\n".join(out)


LONG_PROMPT_SECONDS = 6.0
DEFAULT_RATE = 175   # espeak-ng's words per minute when the setting is left alone


def _tool(name: str) -> str:
    found = shutil.which(name)
    if not found:
        raise PromptError(f"{name} not found: {INSTALL_HINT}")
    return found


@lru_cache(maxsize=4)
def _voice_for(espeak: str) -> str:
    """cmn-latn-pinyin when this espeak-ng has it (Debian 12's `cmn` misreads), else cmn."""
    try:
        out = subprocess.run([espeak, "--voices=cmn"], capture_output=True, timeout=30, check=False).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PromptError(f"espeak-ng --voices=cmn failed ({exc}): {INSTALL_HINT}") from None
    languages = {line.split()[1].lower() for line in out.decode("utf-8", "replace").splitlines()[1:]
                 if len(line.split()) > 1}
    voice = PINYIN_VOICE if PINYIN_VOICE in languages else PLAIN_VOICE
    if voice == PLAIN_VOICE:
        log.warning("espeak-ng has no %s voice; using %s, which may mispronounce", PINYIN_VOICE, PLAIN_VOICE)
    log.info("espeak-ng voice: %s", voice)
    return voice


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read_manifest(path: Path) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("%s unreadable (%s): every prompt is rebuilt", path, exc)
        return {}
    entries = data.get("prompts") if isinstance(data, dict) else None
    return {k: v for k, v in entries.items() if isinstance(v, dict)} if isinstance(entries, dict) else {}


def _write_atomically(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _run(argv: list[str], what: str, stdin: bytes | None = None) -> None:
    try:
        done = subprocess.run(argv, input=stdin, capture_output=True, timeout=TOOL_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        raise PromptError(f"{what} took longer than {TOOL_TIMEOUT:.0f} s") from None
    except OSError as exc:
        raise PromptError(f"{what} could not run: {exc}") from None
    if done.returncode != 0:
        err = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise PromptError(f"{what} failed (exit {done.returncode}): {err[-1] if err else 'no message'}")


def _check_output(path: Path) -> float:
    """The built file's duration in seconds, after checking it is what Asterisk expects."""
    try:
        with wave.open(str(path), "rb") as w:
            params = (w.getframerate(), w.getnchannels(), w.getsampwidth())
            frames = w.getnframes()
    except (wave.Error, EOFError, OSError) as exc:
        raise PromptError(f"sox wrote an unreadable WAV file ({exc})") from None
    if params != (SAMPLE_RATE, CHANNELS, SAMPLE_WIDTH):
        raise PromptError(f"sox wrote {params[0]} Hz, {params[1]} channel(s), {8 * params[2]}-bit; "
                          f"wanted {SAMPLE_RATE} Hz mono 16-bit")
    if frames == 0:
        raise PromptError("the audio is empty (did the synthesiser say nothing?)")
    return frames / SAMPLE_RATE


def _build_one(prompt: Prompt, out: Path, sox: str, espeak: str | None, voice: str | None,
               studio: Path | None, rate: int = 175) -> None:
    """Make `out` from the studio file or the synthesiser; the file appears complete or not at all."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{prompt.id}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        convert = [sox, "-G", "-V1"]  # -G: guard against clipping while resampling
        if studio is not None:
            _run([*convert, str(studio), "-t", "wav", "-r", str(SAMPLE_RATE), "-c", str(CHANNELS),
                  "-b", "16", "-e", "signed-integer", str(tmp)], f"sox on {studio}")
        else:
            if espeak is None or voice is None:
                raise PromptError(f"espeak-ng not found: {INSTALL_HINT}")
            with tempfile.TemporaryDirectory(prefix="hotline-tts-") as work:
                raw = Path(work) / "tts.wav"
                # text on stdin (-b 1: UTF-8), so a text can never be taken for an option
                _run([espeak, "-v", voice, "-s", str(rate), "-b", "1", "-w", str(raw), "--stdin"],
                     f"espeak-ng ({voice})",
                     stdin=prompt.text.encode("utf-8"))
                _run([*convert, str(raw), "-t", "wav", "-r", str(SAMPLE_RATE), "-c", str(CHANNELS),
                      "-b", "16", "-e", "signed-integer", str(tmp), "gain", "-n", "-3"], "sox")
        _check_output(tmp)
        os.chmod(tmp, FILE_MODE)  # mkstemp makes 0600; Asterisk runs as another user
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def build_prompts(settings: Settings, catalogue: Catalogue | None = None, force: bool = False,
                  progress: Progress | None = None, workers: int | None = None) -> BuildReport:
    """Build every prompt of the catalogue (default: the packaged one, with the districts of the
    settings' gazetteer) into `<prompts_dir>/<id>.wav`; `force` rebuilds up-to-date files too.

    Raises PromptError when a tool is missing; a prompt that fails is reported in `errors` and the
    others are still built.
    """
    started = time.monotonic()
    if catalogue is None:
        catalogue = load_catalogue(districts=configured_districts(settings))
    folder = _prompts_dir(settings)
    studio_dir = Path(settings.studio_prompts_dir) if settings.studio_prompts_dir else None

    report = BuildReport()
    jobs: list[tuple[Prompt, Path, Path | None, dict[str, Any]]] = []
    studio_files: dict[str, Path] = {}
    for prompt in catalogue.values():
        candidate = studio_dir / f"{_check_id(prompt.id)}.wav" if studio_dir else None
        if candidate is not None and candidate.is_file():
            studio_files[prompt.id] = candidate
    espeak = voice = None
    if len(studio_files) < len(catalogue):
        espeak = _tool("espeak-ng")
        voice = report.voice = _voice_for(espeak)
    sox = _tool("sox")

    folder.mkdir(parents=True, exist_ok=True)
    manifest_path = folder / MANIFEST
    manifest = _read_manifest(manifest_path)
    for prompt in catalogue.values():
        out = _target(settings, prompt.id, ".wav")
        studio = studio_files.get(prompt.id)
        if studio is not None:
            report.studio.append(prompt.id)
            try:
                key = {"source": "studio", "studio_sha256": _sha256(studio.read_bytes()), "format": FORMAT}
            except OSError as exc:
                report.errors[prompt.id] = f"cannot read {studio}: {exc.strerror or exc}"
                continue
        else:
            key = {"source": "tts", "text_sha256": _sha256(prompt.text.encode("utf-8")), "voice": voice,
                   "format": FORMAT}
            if settings.prompt_voice_rate != DEFAULT_RATE:   # the default keeps manifests of earlier builds valid
                key["rate"] = settings.prompt_voice_rate
        if not force and manifest.get(prompt.id) == key and out.is_file():
            report.skipped.append(prompt.id)
        else:
            jobs.append((prompt, out, studio, key))

    if jobs:
        n = workers or max(1, min(4, os.cpu_count() or 2))
        with ThreadPoolExecutor(max_workers=n, thread_name_prefix="prompt") as pool:
            futures: dict[Future[None], tuple[Prompt, dict[str, Any]]] = {
                pool.submit(_build_one, prompt, out, sox, espeak, voice, studio, settings.prompt_voice_rate):
                (prompt, key)
                for prompt, out, studio, key in jobs}
            done: Iterable[Future[None]] = as_completed(futures)
            if progress is not None:
                done = progress(done, len(futures), "prompts")
            for future in done:
                prompt, key = futures[future]
                try:
                    future.result()
                except PromptError as exc:
                    report.errors[prompt.id] = str(exc)
                    manifest.pop(prompt.id, None)
                # one prompt's surprise must not cost the others their manifest entries
                except Exception as exc:  # noqa: BLE001
                    report.errors[prompt.id] = f"{exc.__class__.__name__}: {exc}"
                    manifest.pop(prompt.id, None)
                else:
                    report.built.append(prompt.id)
                    manifest[prompt.id] = key
        order = {pid: i for i, pid in enumerate(catalogue)}
        report.built.sort(key=order.__getitem__)
        payload = {"format": FORMAT, "prompts": dict(sorted(manifest.items()))}
        _write_atomically(manifest_path, (json.dumps(payload, ensure_ascii=False, indent=1) + "\n").encode("utf-8"))
    try:
        built = build_hold_music(settings, sox, force=force)
        report.hold_music = f"{HOLD_FOLDER}/{HOLD_FILE} " + ("built" if built else "up to date")
    except PromptError as exc:
        report.hold_music = f"{HOLD_FOLDER}/{HOLD_FILE} failed: {exc}"
    for prompt in catalogue.values():
        out = _target(settings, prompt.id, ".wav")
        if out.is_file() and prompt.id not in report.errors:
            try:
                report.lengths[prompt.id] = _check_output(out)
            except PromptError:
                pass
    report.seconds = time.monotonic() - started
    log.info("prompt build: %d built, %d skipped, %d studio, %d errors, voice %s, %.1f s", len(report.built),
             len(report.skipped), len(report.studio), len(report.errors), report.voice, report.seconds)
    return report
