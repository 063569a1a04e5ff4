# The asp sandbox image: the base image plus the in-container runner, nothing else.
# It must build offline: RUN steps have no network, so only install what the base lacks.
ARG BASE_IMAGE=node:20-bookworm-slim
FROM ${BASE_IMAGE}

# Real test suites need git and ps/pkill; the base built on asp machines has both already.
RUN if command -v git >/dev/null && command -v ps >/dev/null; then :; \
    else apt-get update && apt-get install -y --no-install-recommends git procps ca-certificates && rm -rf /var/lib/apt/lists/*; fi

# uid/gid 1000 runs every step. A new named volume copies the ownership of its mount point, so /workspace
# must belong to 1000:1000 here for the sandbox user to write into the volume.
RUN if ! getent passwd 1000 >/dev/null; then \
      (getent group 1000 >/dev/null || groupadd -g 1000 asp) && useradd -u 1000 -g 1000 -d /tmp -M -s /bin/bash asp; \
    fi \
 && mkdir -p /workspace /opt/asp/sandbox \
 && chown 1000:1000 /workspace

# The runner and the ASP agent, each bundled into one file by `npm run build` (one file starts faster than a tree
# of modules); they need nothing but Node, tar and git.
COPY dist/image/ /opt/asp/sandbox/
# The built-in ASP pipeline: its agents' prompts, read by /opt/asp/sandbox/asp-agent.mjs.
COPY prompts/ /opt/asp/prompts/
# The runtime every sandbox of another image runs the runner from (src/docker/runtime-volume.ts fills a volume with
# it): this image's Node, git, tar and the few tools the runner calls, with every library they load and their own
# loader, so they run on any libc or none. Root's, read-only to steps.
# Only the default image is ever a runtime's source: on another base (`asp image build --base X`) a runtime that
# cannot be packed (a base without dash or bash) leaves that image as it was, carrying its runner.
ARG ASP_RUNTIME_VERSION=unversioned
ARG ASP_RUNTIME_REQUIRED=1
RUN mkdir -p /opt/asp-runtime \
 && { node /opt/asp/sandbox/asp-runtime-pack.mjs /opt/asp-runtime "$ASP_RUNTIME_VERSION" >/dev/null || [ "$ASP_RUNTIME_REQUIRED" = 0 ]; }
RUN printf '#!/bin/sh\nexec node /opt/asp/sandbox/asp-sandbox.cjs "$@"\n' > /usr/local/bin/asp-sandbox \
 && printf '#!/bin/sh\nexec node /opt/asp/sandbox/asp-agent.mjs "$@"\n' > /usr/local/bin/asp-agent \
 && chmod 755 /usr/local/bin/asp-sandbox /usr/local/bin/asp-agent

ENV HOME=/tmp TERM=xterm SHELL=/bin/bash LANG=C.UTF-8 \
    GIT_AUTHOR_NAME=asp GIT_AUTHOR_EMAIL=asp@sandbox.invalid GIT_COMMITTER_NAME=asp GIT_COMMITTER_EMAIL=asp@sandbox.invalid
USER 1000:1000
WORKDIR /workspace
CMD ["asp-sandbox"]
