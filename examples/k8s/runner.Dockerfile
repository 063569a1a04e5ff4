# The supervisor image of batch-indexed-job.yaml: asp itself (not the sandbox image the task pods run).
#   npm pack                       # in a checkout of asp-runner: asp-runner-0.1.0.tgz
#   docker build -f examples/k8s/runner.Dockerfile -t registry.example.com/asp-runner:0.1.0 .
FROM node:20-bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends git ca-certificates && rm -rf /var/lib/apt/lists/*
COPY asp-runner-0.1.0.tgz /tmp/asp-runner.tgz
RUN npm install -g /tmp/asp-runner.tgz && rm /tmp/asp-runner.tgz
USER 1000:1000
ENTRYPOINT ["asp"]
