<?php

declare(strict_types=1);

namespace Phase\Sdk\Tests;

/** A `phase node` process on a free loopback port, stopped (by PID) when destroyed. */
final class NodeProcess
{
    private $proc;
    private string $log;
    public string $url;
    public string $nodeKey;

    public function __construct(array $args = [])
    {
        $this->log = tempnam(sys_get_temp_dir(), 'phase-node-log-');
        $cmd = array_merge([phase_bin(), 'node', '--http', '127.0.0.1:0'], $args);
        $this->proc = proc_open($cmd, [0 => ['file', '/dev/null', 'r'], 1 => ['file', '/dev/null', 'w'], 2 => ['file', $this->log, 'w']], $pipes);
        $deadline = microtime(true) + 10;
        while (microtime(true) < $deadline) {
            $text = (string) file_get_contents($this->log);
            if (preg_match('#listening on (http://\S+)#', $text, $m) && str_contains($text, 'accepting jobs')) {
                $this->url = $m[1];
                preg_match('#node key ([0-9a-f]{64})#', $text, $k);
                $this->nodeKey = $k[1];
                return;
            }
            usleep(10000);
        }
        $this->stop();
        throw new \RuntimeException("phase node did not start:\n" . file_get_contents($this->log));
    }

    /** The node's log so far. */
    public function log(): string
    {
        return (string) @file_get_contents($this->log);
    }

    public function metric(string $name): int
    {
        $text = (string) file_get_contents("{$this->url}/metrics");
        return preg_match('/^' . preg_quote($name, '/') . ' (\d+)$/m', $text, $m) ? (int) $m[1] : -1;
    }

    public function stop(): void
    {
        if (is_resource($this->proc)) {
            proc_terminate($this->proc, 9);
            proc_close($this->proc);
        }
        @unlink($this->log);
    }

    public function __destruct()
    {
        $this->stop();
    }
}
