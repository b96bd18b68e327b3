<?php

declare(strict_types=1);

namespace Phase\Sdk\Tests;

/**
 * A hostile node: PHP's built-in server in front of a real node, altering each answer as
 * `mode` says (fixtures/hostile-router.php). Counts the requests it got.
 */
final class HostileServer
{
    private $proc;
    public string $url;
    private string $counter;

    public function __construct(string $mode, string $upstream)
    {
        $sock = stream_socket_server('tcp://127.0.0.1:0');
        $port = (int) substr(strrchr(stream_socket_get_name($sock, false), ':'), 1);
        fclose($sock);
        $this->counter = tempnam(sys_get_temp_dir(), 'phase-hostile-');
        $env = ['HOSTILE_MODE' => $mode, 'UPSTREAM' => $upstream, 'COUNTER' => $this->counter, 'PATH' => getenv('PATH')];
        $this->proc = proc_open(
            [PHP_BINARY, '-S', "127.0.0.1:{$port}", __DIR__ . '/fixtures/hostile-router.php'],
            [0 => ['file', '/dev/null', 'r'], 1 => ['file', '/dev/null', 'w'], 2 => ['file', '/dev/null', 'w']],
            $pipes,
            null,
            $env
        );
        $this->url = "http://127.0.0.1:{$port}";
        $deadline = microtime(true) + 5;
        while (microtime(true) < $deadline) {
            if (@fsockopen('127.0.0.1', $port)) {
                return;
            }
            usleep(10000);
        }
        throw new \RuntimeException('hostile server did not start');
    }

    public function hits(): int
    {
        return strlen((string) file_get_contents($this->counter));
    }

    public function __destruct()
    {
        if (is_resource($this->proc)) {
            proc_terminate($this->proc, 9);
            proc_close($this->proc);
        }
        @unlink($this->counter);
    }
}
