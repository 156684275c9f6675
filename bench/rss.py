"""The server's memory while a benchmark runs: shared by bench/imports.py and bench/uploads.py."""
import threading
import time


class Rss(threading.Thread):
    """The largest resident set of process `pid` while it runs, in MiB, sampled every 50 ms."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.peak, self.running = pid, 0, True

    def run(self):
        while self.running:
            try:
                with open(f"/proc/{self.pid}/status") as status:
                    for line in status:
                        if line.startswith("VmRSS:"):
                            self.peak = max(self.peak, int(line.split()[1]) // 1024)
            except OSError:
                pass
            time.sleep(0.05)
