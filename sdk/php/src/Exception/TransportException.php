<?php

declare(strict_types=1);

namespace Phase\Sdk\Exception;

/** The node could not be reached, or the connection failed or timed out. Retried on another node. */
final class TransportException extends \RuntimeException implements PhaseException
{
}
