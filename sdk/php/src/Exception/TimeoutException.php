<?php

declare(strict_types=1);

namespace Phase\Sdk\Exception;

/** A wait for an asynchronous job ended before the job did (the job goes on; wait again). */
final class TimeoutException extends \RuntimeException implements PhaseException
{
}
