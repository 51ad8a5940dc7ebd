import asyncio

from django.core.management.base import BaseCommand

from workflow.llm.simulator import Config, Simulator


class Command(BaseCommand):
    help = "Serve an OpenAI-compatible LLM simulator (for tests and demos of failures)."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8001)
        parser.add_argument("--ttft", type=float, default=0.05, help="seconds to first token")
        parser.add_argument("--tps", type=float, default=200.0, help="tokens per second")
        parser.add_argument("--words", type=int, default=60, help="words in each answer")
        parser.add_argument(
            "--fault",
            action="append",
            default=[],
            help="a fault for the next request (429, 500, drop@N, stall@N, …)",
        )

    def handle(self, *args, host, port, ttft, tps, words, fault, **options):
        config = Config(ttft=ttft, tps=tps, words=words, faults=fault)
        self.stdout.write(f"LLM simulator on http://{host}:{port}/v1", ending="\n")
        self.stdout.flush()
        asyncio.run(Simulator(config).serve(host, port))
