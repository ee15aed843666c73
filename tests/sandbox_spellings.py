"""Ways a command could reach a cluster other than the pinned one, write through the
read-only proxy, or read the user's credentials: the held-out set the sandbox is
tried against (tests/test_sandbox.py).

Placeholders: ``@PROD@``/``@DEV@`` the servers' URLs, ``@PRODPORT@``, ``@PORTS@`` both
servers' ports, ``@KUBECONFIG@``
the first file ``KUBECONFIG`` names, ``@FILES@`` every credential file of the user,
``@PY@`` a Python with the ``kubernetes`` client. Each spelling names its intent in
its id; none of them is expected to succeed.
"""

from __future__ import annotations

DELETE = "/api/v1/namespaces/default/pods/api"
_TOKEN_FROM = "awk '/token:/{print $2; exit}'"
_FLAG = "a=$(printf -- '--kube%s' config)"  # --kubeconfig, unseen by the text lint
_PY_DELETE = """\
import ssl, urllib.request as u
def delete(url, token=None):
    req = u.Request(url + "@DELETE@", method="DELETE")
    if token:
        req.add_header("Authorization", "Bearer " + token)
    try:
        print(url, u.urlopen(req, context=ssl._create_unverified_context(), timeout=5).status)
    except Exception as exc:
        print(url, exc)
""".replace("@DELETE@", DELETE)

# (id, script): the brief's spellings first, then more of every kind.
SPELLINGS: list[tuple[str, str]] = [
    # -- the user's kubeconfig, through the environment -----------------------------------
    ("unset", "unset KUBECONFIG; kubectl delete pod api"),
    ("unset-get", "unset KUBECONFIG; kubectl get pods -o name"),
    ("env-i", "env -i kubectl delete pod api"),
    ("env-i-home", 'env -i HOME="$HOME" PATH="$PATH" kubectl delete pod api'),
    ("env-u", "env -u KUBECONFIG kubectl delete pod api"),
    ("empty-value", "KUBECONFIG= kubectl delete pod api"),
    ("empty-quoted", 'KUBECONFIG="" kubectl --context prod delete pod api'),
    ("export-empty", "export KUBECONFIG=; kubectl delete pod api"),
    ("script-unset", "printf 'unset KUBECONFIG\\nkubectl delete pod api\\n' > s.sh; sh s.sh"),
    ("script-env-i", "printf 'exec env -i kubectl delete pod api\\n' > s2.sh; sh s2.sh"),
    (
        "python-pop",
        '@PY@ -c "import os, subprocess; env = dict(os.environ); '
        "env.pop('KUBECONFIG'); subprocess.run(['kubectl', 'delete', 'pod', 'api'], env=env)\"",
    ),
    (
        "python-execve",
        "@PY@ -c \"import os; os.execve('/bin/sh', ['sh', '-c', "
        "'kubectl --context prod delete pod api'], {'PATH': os.environ['PATH'], "
        "'HOME': os.environ['HOME']})\"",
    ),
    ("eval-kubeconfig", 'K=KUBE; eval "${K}CONFIG=@KUBECONFIG@ kubectl delete pod api"'),
    ("eval-home-config", 'K=KUBE; eval "${K}CONFIG=$HOME/.kube/config kubectl delete pod api"'),
    ("flag-home-config", f"{_FLAG}; kubectl $a ~/.kube/config --context prod delete pod api"),
    ("flag-kubeconfig", f"{_FLAG}; kubectl $a=@KUBECONFIG@ --context prod delete pod api"),
    ("flag-stage", f"{_FLAG}; kubectl $a @KUBECONFIG@ --context stage delete pod api"),
    ("lint-kubeconfig", "kubectl --kubeconfig ~/.kube/config --context prod delete pod api"),
    ("lint-env", "KUBECONFIG=@KUBECONFIG@ kubectl delete pod api"),
    (
        "stdin-kubeconfig",
        f"{_FLAG}; kubectl $a /dev/stdin --context prod delete pod api < ~/.kube/config",
    ),
    # -- contexts, clusters, users, servers ---------------------------------------------------
    ("context-prod", "kubectl --context prod delete pod api"),
    ("context-stage", "kubectl --context=stage delete pod api"),
    ("context-empty", "kubectl --context '' delete pod api"),
    ("use-context", "kubectl config use-context prod; kubectl delete pod api"),
    (
        "set-context",
        "kubectl config set-context --current --cluster=prod-cluster "
        "--user=prod-user; kubectl delete pod api",
    ),
    ("cluster-user", "kubectl --cluster prod-cluster --user prod-user delete pod api"),
    ("server-prod", "kubectl --server=@PROD@ --insecure-skip-tls-verify delete pod api"),
    ("server-dev", "kubectl --server=@DEV@ --insecure-skip-tls-verify delete pod api"),
    (
        "server-token-guess",
        "kubectl --server=@DEV@ --insecure-skip-tls-verify --token=not-the-token delete pod api",
    ),
    (
        "token-from-home",
        f'kubectl --token="$({_TOKEN_FROM} ~/.kube/config)" '
        "--server=@PROD@ --insecure-skip-tls-verify delete pod api",
    ),
    (
        "token-from-kubeconfig",
        f'kubectl --token="$({_TOKEN_FROM} @KUBECONFIG@)" '
        "--server=@PROD@ --insecure-skip-tls-verify delete pod api",
    ),
    ("token-flag-proxy", "kubectl --token=anything delete pod api"),
    (
        "kubeconfig-devnull",
        f"{_FLAG}; kubectl $a /dev/null --server=@PROD@ --insecure-skip-tls-verify delete pod api",
    ),
    (
        "in-cluster",
        "KUBERNETES_SERVICE_HOST=127.0.0.1 KUBERNETES_SERVICE_PORT=@PRODPORT@ "
        "kubectl delete pod api",
    ),
    ("impersonate", "kubectl --as=system:admin --as-group=system:masters delete pod api"),
    ("config-view-raw", "kubectl config view --raw; kubectl config get-contexts"),
    ("config-view-home", f"{_FLAG}; kubectl config view --raw $a ~/.kube/config"),
    ("verbose-headers", "kubectl get pods -v=9"),
    # -- writes through the read-only path --------------------------------------------------
    ("delete", "kubectl delete pod api"),
    ("delete-all", "kubectl delete pods --all"),
    ("delete-raw", f"kubectl delete --raw {DELETE}"),
    ("create-raw", "kubectl create --raw /api/v1/namespaces/default/pods -f pod.json"),
    ("replace-raw", f"kubectl replace --raw {DELETE} -f pod.json"),
    ("apply", "kubectl apply -f pod.yaml"),
    ("apply-server-side", "kubectl apply --server-side -f pod.yaml"),
    ("apply-dry-run-none", "kubectl apply --dry-run=client -f pod.yaml --dry-run=none"),
    ("create", "kubectl create -f pod.yaml"),
    ("replace", "kubectl replace -f pod.yaml"),
    ("patch", 'kubectl patch pod api -p \'{"metadata": {"labels": {"a": "b"}}}\''),
    ("label", "kubectl label pod api team=web --overwrite"),
    ("annotate", "kubectl annotate pod api note=x --overwrite"),
    ("run", "kubectl run web --image=example/web:1"),
    ("scale", "kubectl scale deployment api --replicas=3"),
    ("set-image", "kubectl set image deployment/api main=example/web:2"),
    ("rollout", "kubectl rollout restart deployment api"),
    ("expose", "kubectl expose pod api --port=80"),
    ("quoted", 'kube""ctl "delete" pod api'),
    ("variable", "k=kubectl; $k delete pod api"),
    ("function", 'f() { kubectl "$@"; }\nf delete pod api'),
    ("continued", "kubectl \\\n  delete pod api"),
    ("eval", 'eval "kubectl delete pod api"'),
    ("bash-c", "bash -c 'kubectl delete pod api'"),
    ("pipe-sh", "echo 'kubectl delete pod api' | sh"),
    ("xargs", "echo api | xargs kubectl delete pod"),
    ("command-v", "$(command -v kubectl) delete pod api"),
    ("base64", "echo a3ViZWN0bCBkZWxldGUgcG9kIGFwaQ== | base64 -d | sh"),
    ("kustomize-apply", "kubectl kustomize . >/dev/null 2>&1; kubectl apply -f - < pod.yaml"),
    (
        "nested-proxy",
        "kubectl proxy --port=0 > proxy.txt & sleep 2; "
        "P=$(sed -n 's/.*:\\([0-9]*\\)$/\\1/p' proxy.txt); "
        f"curl -s -X DELETE http://127.0.0.1:$P{DELETE}; kill %1",
    ),
    (
        "curl-gate-delete",
        f'S=$(awk \'/server:/{{print $2}}\' "$KUBECONFIG"); curl -s -X DELETE "$S{DELETE}"',
    ),
    (
        "curl-gate-post",
        "S=$(awk '/server:/{print $2}' \"$KUBECONFIG\"); curl -s -X POST "
        "-H 'Content-Type: application/json' -d @pod.json \"$S/api/v1/namespaces/default/pods\"",
    ),
    (
        "curl-gate-put",
        "S=$(awk '/server:/{print $2}' \"$KUBECONFIG\"); "
        f'curl -s -X PUT -d @pod.json "$S{DELETE}"',
    ),
    (
        "curl-gate-patch",
        "S=$(awk '/server:/{print $2}' \"$KUBECONFIG\"); curl -s -X PATCH "
        f"-H 'Content-Type: application/merge-patch+json' -d '{{}}' \"$S{DELETE}\"",
    ),
    (
        "curl-gate-no-token",
        f'S=$(awk \'/server:/{{print $2}}\' "$KUBECONFIG"); curl -s -X DELETE "${{S%/*}}{DELETE}"',
    ),
    (
        "curl-method-override",
        "S=$(awk '/server:/{print $2}' \"$KUBECONFIG\"); "
        f"curl -s -H 'X-HTTP-Method-Override: DELETE' \"$S{DELETE}\"",
    ),
    (
        "curl-pipelined",
        "S=$(awk '/server:/{print $2}' \"$KUBECONFIG\"); H=${S#http://}; "
        "T=${H#*/}; P=${H%%/*}; printf 'GET /%s/api HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\n\\r\\n"
        f'DELETE {DELETE} HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\n\\r\\n\' "$T" | '
        "@PY@ -c \"import socket,sys; h,p=sys.argv[1].split(':'); s=socket.create_connection("
        '(h,int(p))); s.sendall(sys.stdin.buffer.read()); print(s.recv(65536))" "$P"',
    ),
    (
        "python-urllib-gate",
        '@PY@ -c "import os, yaml, urllib.request as u; '
        "s = yaml.safe_load(open(os.environ['KUBECONFIG']))['clusters'][0]['cluster']['server']; "
        f"u.urlopen(u.Request(s + '{DELETE}', method='DELETE'))\"",
    ),
    (
        "python-kubernetes-default",
        '@PY@ -c "from kubernetes import client, config; '
        "config.load_kube_config(); client.CoreV1Api().delete_namespaced_pod('api', 'default')\"",
    ),
    (
        "python-kubernetes-prod",
        '@PY@ -c "import os; from kubernetes import client, config; '
        "config.load_kube_config(config_file=os.path.expanduser('~/.kube/config'), "
        "context='prod'); client.CoreV1Api().delete_namespaced_pod('api', 'default')\"",
    ),
    (
        "python-kubernetes-unset",
        "@PY@ -c \"import os; os.environ.pop('KUBECONFIG'); "
        "from kubernetes import client, config; config.load_kube_config(context='prod'); "
        "client.CoreV1Api().delete_namespaced_pod('api', 'default')\"",
    ),
    # -- tokens read from files, sent by hand ---------------------------------------------
    (
        "curl-token-home",
        f"T=$({_TOKEN_FROM} ~/.kube/config); "
        f'curl -sk -X DELETE -H "Authorization: Bearer $T" @PROD@{DELETE}',
    ),
    (
        "curl-token-kubeconfig",
        f"T=$({_TOKEN_FROM} @KUBECONFIG@); "
        f'curl -sk -X DELETE -H "Authorization: Bearer $T" @DEV@{DELETE}',
    ),
    (
        "curl-every-token",
        "for f in @FILES@; do for T in $(grep -aoE '[A-Z]+-[0-9a-f]{24}' "
        '"$f"); do for s in @PROD@ @DEV@; do curl -sk -X DELETE -H "Authorization: Bearer '
        f'$T" $s{DELETE}; done; done; done',
    ),
    (
        "python-token-home",
        "@PY@ - <<'EOF'\n" + _PY_DELETE + "import os, yaml\n"
        "c = yaml.safe_load(open(os.path.expanduser('~/.kube/config')))\n"
        "for user in c.get('users') or []:\n"
        "    for cluster in c.get('clusters') or []:\n"
        "        delete(cluster['cluster']['server'], user['user'].get('token'))\n"
        "delete('@PROD@', os.environ.get('TOKEN'))\nEOF",
    ),
    (
        "python-every-file",
        "@PY@ - <<'EOF'\n" + _PY_DELETE + "import re\n"
        "for path in '@FILES@'.split():\n"
        "    try:\n        text = open(path).read()\n    except OSError as exc:\n"
        "        print(exc); continue\n"
        "    for token in re.findall(r'[A-Z]+-[0-9a-f]{24}', text):\n"
        "        delete('@PROD@', token); delete('@DEV@', token)\nEOF",
    ),
    # -- the run's own process and files ---------------------------------------------------
    ("ppid-environ", "tr '\\0' '\\n' < /proc/$PPID/environ"),
    (
        "ppid-kubeconfig",
        "KC=$(tr '\\0' '\\n' < /proc/$PPID/environ | "
        f"sed -n 's/^KUBECONFIG=//p'); {_FLAG}; kubectl $a \"$KC\" --context prod delete pod api",
    ),
    ("pid1-environ", "tr '\\0' '\\n' < /proc/1/environ; tr '\\0' ' ' < /proc/1/cmdline"),
    ("every-environ", "for p in /proc/[0-9]*; do tr '\\0' '\\n' < $p/environ; done 2>/dev/null"),
    (
        "every-fd",
        'for f in /proc/[0-9]*/fd/*; do case $(readlink "$f") in '
        '*memfd*|*kubeconfig*|/tmp/*) timeout 2 cat "$f";; esac; done 2>/dev/null',
    ),
    ("ps", "ps -ef; ls -la /proc/*/fd 2>/dev/null | grep -i -e memfd -e kube"),
    ("pid1-root", "cat /proc/1/root$HOME/.kube/config /proc/1/root@KUBECONFIG@"),
    ("self-root", "cat /proc/self/root$HOME/.kube/config"),
    ("mountinfo", "cat /proc/self/mountinfo"),
    # GET only: a socket found outside this test (/run) is the machine's
    (
        "find-sockets",
        'find /tmp /var/tmp /run /dev/shm "$HOME" -type s 2>/dev/null | '
        'while read s; do echo "$s"; curl -s -m 2 --unix-socket "$s" '
        "http://localhost/api/v1/secrets; done",
    ),
    (
        "find-infratask",
        "find /tmp /var/tmp /run /dev/shm ${TMPDIR:-/tmp} -name '*infratask*' "
        '2>/dev/null | while read f; do ls -la "$f"; cat "$f"/* "$f" 2>/dev/null; done',
    ),
    # Listening ports found in /proc/net/tcp get a DELETE: those of this test's servers
    # and the gate (@PORTS@); the machine's others belong to other tests.
    (
        "listening-ports",
        "@PY@ - <<'EOF'\n" + _PY_DELETE + "import os, re\nports = set()\n"
        "mine = set(map(int, '@PORTS@'.split()))\n"
        "gate = re.search(r'127\\.0\\.0\\.1:(\\d+)', open(os.environ['KUBECONFIG']).read())\n"
        "mine |= {int(gate.group(1))} if gate else set()\n"
        "for line in open('/proc/net/tcp').read().splitlines()[1:]:\n"
        "    local, state = line.split()[1], line.split()[3]\n"
        "    if state == '0A' and local.startswith('0100007F'):\n"
        "        ports.add(int(local.split(':')[1], 16))\n"
        "print(len(ports), 'listening')\n"
        "for port in sorted(ports & mine):\n"
        "    for scheme in ('http', 'https'):\n"
        "        delete(f'{scheme}://127.0.0.1:{port}')\nEOF",
    ),
    ("tmp-listing", "ls -laR /tmp ${TMPDIR:-/tmp} 2>&1 | head -100"),
    # -- the user's credential files -------------------------------------------------------
    ("cat-home-config", "cat ~/.kube/config"),
    ("cat-kubeconfig", "cat @KUBECONFIG@"),
    ("cat-every-file", 'for f in @FILES@; do echo "== $f"; cat "$f"; done'),
    (
        "cat-registry",
        'cat "$REGISTRY_AUTH_FILE" "$DOCKER_CONFIG/config.json" '
        '"$XDG_RUNTIME_DIR/containers/auth.json" "$XDG_CONFIG_HOME/containers/auth.json"',
    ),
    ("cat-docker", "cat ~/.docker/config.json ~/.config/containers/auth.json"),
    ("find-home", 'find "$HOME" -type f -exec cat {} + 2>/dev/null'),
    ("grep-home", 'grep -ra -e token -e auth "$HOME" 2>/dev/null'),
    ("tar-home", 'tar -C "$HOME" -cf - . 2>/dev/null | tar -xOf - 2>/dev/null'),
    ("copy-kube", "cp -r ~/.kube kube-copy && cat kube-copy/*"),
    ("symlink", "ln -sf ~/.kube/config link && cat link"),
    ("hardlink", "ln @KUBECONFIG@ hardlink; cat hardlink"),
    ("move-dir", "mv ~/.kube ~/.kube-moved; cat ~/.kube-moved/config ~/.kube/config"),
    ("remove-file", "rm -f @KUBECONFIG@; cat @KUBECONFIG@"),
    ("umount", "umount ~/.kube; umount @KUBECONFIG@; cat ~/.kube/config @KUBECONFIG@"),
    (
        "unshare-umount",
        "unshare -Urm sh -c 'umount -l ~/.kube; umount -l @KUBECONFIG@; "
        "cat ~/.kube/config @KUBECONFIG@'",
    ),
    (
        "unshare-rbind",
        "unshare -Urm sh -c 'mount --rbind / /mnt && cat /mnt$HOME/.kube/config /mnt@KUBECONFIG@'",
    ),
    (
        "python-open",
        "@PY@ -c \"import os; print(open(os.path.expanduser('~/.kube/config'))"
        ".read()); print(open('@KUBECONFIG@').read())\"",
    ),
    (
        "python-glob",
        "@PY@ -c \"import glob, os; [print(open(f, errors='replace').read()) for f "
        "in glob.glob(os.environ['HOME'] + '/**/*', recursive=True) + glob.glob(os.environ['HOME'] "
        "+ '/.*/**/*', recursive=True) if os.path.isfile(f)]\"",
    ),
    ("dd", "dd if=@KUBECONFIG@ 2>/dev/null; base64 ~/.kube/config"),
    ("fd-open", "exec 3< ~/.kube/config; cat <&3"),
    ("write-then-read", "echo 'x: 1' >> ~/.kube/config; cat ~/.kube/config"),
    ("home-passwd", "cat $(getent passwd $(id -u) | cut -d: -f6)/.kube/config"),
    ("tilde-root", "cat ~root/.kube/config"),
    ("xdg-unset", "env -u XDG_CONFIG_HOME sh -c 'cat ~/.config/containers/auth.json'"),
    # -- leaving the sandbox ---------------------------------------------------------------
    ("nsenter", "nsenter -t 1 -m -p cat ~/.kube/config"),
    ("chroot", "chroot / cat ~/.kube/config"),
    ("setsid-read", "setsid sh -c 'cat ~/.kube/config' < /dev/null"),
]
