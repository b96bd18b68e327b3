<?php

declare(strict_types=1);

namespace Phase\Sdk\Tests;

use Psr\Log\AbstractLogger;

/** Lines a PSR-3 logger gets, interpolated as a logger would print them. */
final class LinesLogger extends AbstractLogger
{
    /** @var list<array{string,string,array}> */
    public array $lines = [];

    public function log($level, $message, array $context = []): void
    {
        $text = preg_replace_callback('/\{(\w+)\}/', static fn ($m) => (string) ($context[$m[1]] ?? $m[0]), (string) $message);
        $this->lines[] = [(string) $level, $text, $context];
    }

    /** @return list<string> "level: text" */
    public function texts(): array
    {
        return array_map(static fn ($l) => "{$l[0]}: {$l[1]}", $this->lines);
    }
}
