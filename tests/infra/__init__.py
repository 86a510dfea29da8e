"""flowd test infrastructure: a real Kafka broker and a real Kubernetes control plane.

Everything is started on 127.0.0.1 from binaries cached in ``~/.cache/flowd-testbin``
(override with ``FLOWD_TESTBIN``). See ``docs/infra.md``.

    python -m tests.infra build [kafka|k8s|all]
    python -m tests.infra up [kafka|k8s|all]   /  env  /  down
"""
