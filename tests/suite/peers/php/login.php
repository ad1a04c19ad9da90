<?php
// The legacy application's ID + PIN login, as PHP reads it: `corp.id`, `corp id` and `corp[id`
// all arrive as $_POST['corp_id'], and the application trims what it reads. It prints whom it
// would log in.
$corp = trim($_REQUEST['corp_id'] ?? '');
$user = trim($_REQUEST['user_id'] ?? '');
header('Content-Type: text/plain');
echo "LOGIN corp=$corp user=$user\n";
