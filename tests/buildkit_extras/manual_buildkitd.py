"""Manual runs against a standalone buildkitd (not available in CI): cache, auth, secrets, TLS.

Usage (the harness for the registries: ``eval "$(python -m tests.harness up)"``)::

    python -m tests.buildkit_extras.manual_buildkitd ADDRESS CHECK...

CHECKs: ``registry-cache`` (export mode=max to $WFE_REGISTRY, prune, import), ``local-cache``
(export to a directory through the session content store, prune, import), ``auth`` (push with
the image exporter and registry cache to $WFE_AUTH_REGISTRY through the Auth service, import,
then a wrong password), ``secrets-ssh`` (a secret and a private SSH agent, ``ssh-add -l`` and a
refused ``ssh-add -D``), ``tls`` (ADDRESS is ``tcp://`` of a daemon started with the certs in
``/opt/buildkit/certs``; good and bad client settings). Each prints what happened; the
context is ``FROM scratch`` plus the host's static busybox (the daemon may have no registry
access), built with RUN network ``none``. docs/buildkit-auth-secrets-ssh-cache.md lists the
results.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from wfe_buildkit.address import TLSConfig
from wfe_buildkit.build_secrets import load_secrets, parse_secrets, secrets_service
from wfe_buildkit.cache_options import (
    local_cache_service,
    local_cache_stores,
    parse_cache_list,
    prepare_local_imports,
    update_local_cache_index,
)
from wfe_buildkit.client import BuildFailed, Client, DaemonConnectionError, Export
from wfe_buildkit.registry_auth import auth_service, credential_sources, unauthorized_hint
from wfe_buildkit.ssh_forward import parse_ssh, ssh_service, start_ssh_forwarding
from wfe_buildkit.tls_config import TLSConfigError, explain_tls_failure, load_tls

from tests.buildkit_extras.certs import make_pki
from tests.buildkit_extras.daemon import Recorded, build

STAMP_RUN = (
    'RUN ["/bin/busybox","sh","-c","/bin/busybox head -c 16 /dev/urandom | '
    "/bin/busybox od -An -tx1 | /bin/busybox tr -d ' \\\\n' > /stamp\"]\n"
)


def context(work: Path, *, ssh_tools: bool = False) -> Path:
    ctx = work / "ctx"
    ctx.mkdir(parents=True, exist_ok=True)
    shutil.copy2("/bin/busybox", ctx / "busybox")
    lines = ["FROM scratch\n", "COPY busybox /bin/busybox\n", STAMP_RUN]
    if ssh_tools:
        tools = ctx / "sshtools"
        tools.mkdir(exist_ok=True)
        ssh_add = shutil.which("ssh-add") or "/usr/bin/ssh-add"
        shutil.copy2(ssh_add, tools / "ssh-add")
        ldd = subprocess.run(["ldd", ssh_add], capture_output=True, text=True, check=True)
        for token in ldd.stdout.split():
            if token.startswith("/"):
                shutil.copy2(token, tools / Path(token).name)
        run = "/sshtools/ld-linux-x86-64.so.2 --library-path /sshtools /sshtools/ssh-add"
        lines += [
            "COPY sshtools /sshtools\n",
            'RUN --mount=type=secret,id=tok --mount=type=ssh ["/bin/busybox","sh","-c",'
            f'"/bin/busybox sha256sum /run/secrets/tok > /tok.sha; {run} -l > /keys.txt 2>&1; '
            f'{run} -D >> /keys.txt 2>&1; echo rc=$? >> /keys.txt"]\n',
        ]
    (ctx / "Dockerfile").write_text("".join(lines))
    return ctx


async def registry_cache(client: Client, work: Path) -> None:
    ref = f"{os.environ['WFE_REGISTRY']}/wfe/manual-cache:c"
    ctx = context(work)
    result = await build(client, ctx, [Export.local(work / "out1")],
                         cache_exports=parse_cache_list([f"type=registry,ref={ref},mode=max"],
                                                        "cache_to"))
    print("export response:", dict(result.exporter_response))
    print("pruned:", await client.prune(all=True))
    recorder = Recorded()
    await build(client, ctx, [Export.local(work / "out2")], recorder=recorder,
                cache_imports=parse_cache_list([f"type=registry,ref={ref}"], "cache_from"))
    same = (work / "out1/stamp").read_text() == (work / "out2/stamp").read_text()
    print("stamp reused:", same, "cached:", recorder.cached())


async def local_cache(client: Client, work: Path) -> None:
    cache, ctx = work / "lcache", context(work)
    exports = parse_cache_list([f"type=local,dest={cache},mode=max"], "cache_to")
    service = local_cache_service(local_cache_stores((), exports))
    result = await build(client, ctx, [Export.local(work / "out1")], services=[service],
                         cache_exports=exports)
    print("index updated:", update_local_cache_index(exports, result.exporter_response))
    print("blobs written:", service.servicer.blobs_written)
    print("index.json:", json.loads((cache / "index.json").read_text())["manifests"])
    print("pruned:", await client.prune(all=True))
    imports = prepare_local_imports(parse_cache_list([f"type=local,src={cache}"], "cache_from"))
    service = local_cache_service(local_cache_stores(imports, ()))
    recorder = Recorded()
    await build(client, ctx, [Export.local(work / "out2")], services=[service],
                recorder=recorder, cache_imports=imports)
    same = (work / "out1/stamp").read_text() == (work / "out2/stamp").read_text()
    print("stamp reused:", same, "bytes read:", service.servicer.bytes_read,
          "cached:", recorder.cached())


async def auth(client: Client, work: Path) -> None:
    host, user = os.environ["WFE_AUTH_REGISTRY"], os.environ["WFE_AUTH_REGISTRY_USERNAME"]

    def service(password: str) -> object:
        return auth_service(credential_sources({host: {"username": user, "password_env": "PW"}},
                                               environ={"PW": password},
                                               use_docker_config=False))

    ctx = context(work)
    good = service(os.environ["WFE_AUTH_REGISTRY_PASSWORD"])
    result = await build(
        client, ctx, [Export.image([f"{host}/wfe/manual-pushed:1"], push=True)], services=[good],
        cache_exports=parse_cache_list([f"type=registry,ref={host}/wfe/manual-cache:c,mode=max"],
                                       "cache_to"),
    )
    print("pushed digest:", result.exporter_response.get("containerimage.digest"))
    await client.prune(all=True)
    recorder = Recorded()
    await build(client, ctx, [Export.local(work / "out")], services=[good], recorder=recorder,
                cache_imports=parse_cache_list([f"type=registry,ref={host}/wfe/manual-cache:c"],
                                               "cache_from"))
    print("imported from the auth registry, cached:", len(recorder.cached()))
    bad = service("wrong-password")
    try:
        await build(client, ctx, [Export.image([f"{host}/wfe/manual-pushed:2"], push=True)],
                    services=[bad], no_cache=True)
    except BuildFailed as exc:
        print("wrong password:", str(exc).splitlines()[-1][:300])
        print("hint:", unauthorized_hint(str(exc), bad.servicer))  # type: ignore[attr-defined]


async def secrets_ssh(client: Client, work: Path) -> None:
    key = work / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    ctx = context(work, ssh_tools=True)
    secrets = secrets_service(load_secrets(parse_secrets([{"id": "tok", "env": "TOK"}]),
                                           environ={"TOK": "manual-secret"}))
    with start_ssh_forwarding(parse_ssh([{"paths": [str(key)]}])) as forwarding:
        ssh = ssh_service(forwarding)
        recorder = Recorded()
        await build(client, ctx, [Export.local(work / "out")], services=[secrets, ssh],
                    no_cache=True, recorder=recorder)
        print("forwarded/refused agent requests:", ssh.servicer.forwarded, ssh.servicer.refused)
    print("secret in log:", "manual-secret" in recorder.text)
    print("tok.sha:", (work / "out/tok.sha").read_text().split()[0])
    print("keys.txt:", (work / "out/keys.txt").read_text())


async def tls(address: str, work: Path) -> None:
    certs = Path("/opt/buildkit/certs")
    pki = make_pki(work / "pki")
    good = TLSConfig(ca=str(certs / "ca.pem"), cert=str(certs / "client.pem"),
                     key=str(certs / "client-key.pem"))
    cases = {
        "good": good,
        "server_name=localhost": TLSConfig(good.ca, good.cert, good.key, "localhost"),
        "wrong CA": TLSConfig(str(pki.other_ca), good.cert, good.key),
        "no client cert": TLSConfig(good.ca),
        "client cert of another CA": TLSConfig(good.ca, str(pki.client_cert),
                                               str(pki.client_key)),
        "key of another cert": TLSConfig(good.ca, good.cert, str(pki.client_key)),
        "wrong server name": TLSConfig(good.ca, good.cert, good.key, "buildkit.example"),
    }
    for name, config in cases.items():
        try:
            load_tls(config)
        except TLSConfigError as exc:
            print(f"{name}: refused before connecting: {exc}")
            continue
        client = Client(address, tls=config, connect_timeout=5)
        try:
            await client.ping()
            print(f"{name}: OK")
            if name == "good":
                await build(client, context(work), [Export.local(work / "out")], no_cache=True)
                print("  build over TLS OK")
        except DaemonConnectionError as exc:
            # the client already explains TLS failures; explaining again is a no-op
            print(f"{name}: {explain_tls_failure(address, config, exc.reason)}")
        finally:
            await client.close()


async def main(address: str, checks: list[str]) -> None:
    for check in checks:
        print(f"== {check}")
        with tempfile.TemporaryDirectory(prefix="wfe-manual-") as directory:
            work = Path(directory)
            if check == "tls":
                await tls(address, work)
                continue
            async with Client(address) as client:
                await {"registry-cache": registry_cache, "local-cache": local_cache,
                       "auth": auth, "secrets-ssh": secrets_ssh}[check](client, work)


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    asyncio.run(main(sys.argv[1], sys.argv[2:]))
