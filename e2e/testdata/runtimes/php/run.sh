#!/bin/sh
# php -S needs the address in its arguments; keter passes args unexpanded.
exec php -S "127.0.0.1:$PORT" index.php
