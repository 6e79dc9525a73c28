# codemill's image: `codemill serve` (or `codemill worker`) with the sandbox working.
#
#   docker build -t codemill .                                  # without the agent CLIs
#   docker build -t codemill --build-arg AGENT_CLIS=true .      # with the pinned agent CLIs
#
# Run it (bubblewrap makes user, mount, pid and network namespaces, which Docker's default
# seccomp and AppArmor profiles forbid; nothing here needs privileges or capabilities):
#
#   docker run -p 8080:8080 -v codemill:/var/lib/codemill \
#     --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
#     -e ANTHROPIC_API_KEY codemill
#
# The home is /var/lib/codemill (codemill.toml, the SQLite store, clones, worktrees); mount a
# volume there, or set store.postgres_url_env in codemill.toml for PostgreSQL. `codemill doctor`
# in the container says whether the sandbox can start.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p codemill \
 && install -m 0755 target/release/codemill /usr/local/bin/codemill

FROM debian:bookworm-slim
ARG AGENT_CLIS=false
RUN apt-get update \
 && apt-get install -y --no-install-recommends bubblewrap git ca-certificates openssh-client \
 && if [ "$AGENT_CLIS" = true ]; then apt-get install -y --no-install-recommends nodejs npm; fi \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /usr/local/bin/codemill /usr/local/bin/codemill
COPY scripts/install-agent-clis.sh /opt/codemill/install-agent-clis.sh
# The pinned agent CLIs (Claude Code, Codex, Gemini CLI, opencode) in /opt/codemill/.tools/npm,
# on PATH; left out by default.
RUN if [ "$AGENT_CLIS" = true ]; then \
      mkdir -p /opt/codemill/scripts \
      && mv /opt/codemill/install-agent-clis.sh /opt/codemill/scripts/ \
      && /opt/codemill/scripts/install-agent-clis.sh \
      && rm -rf /root/.npm; \
    fi
ENV PATH="/opt/codemill/.tools/npm/node_modules/.bin:${PATH}" \
    CODEMILL_HOME=/var/lib/codemill
RUN useradd --system --uid 10001 --home-dir /var/lib/codemill --create-home codemill
USER 10001
WORKDIR /var/lib/codemill
VOLUME /var/lib/codemill
EXPOSE 8080
ENTRYPOINT ["/bin/sh", "-c", "codemill init >/dev/null && exec codemill \"$@\"", "codemill"]
CMD ["serve", "--listen", "0.0.0.0:8080"]
