//! The cities of the ride-hailing app, shared by the generator (where rides happen) and gold
//! (which city a ride belongs to: the nearest center to its pickup point).

/// `(name, latitude, longitude, currency)` of each city center.
pub const CITIES: [(&str, f64, f64, &str); 12] = [
    ("Paris", 48.8566, 2.3522, "EUR"),
    ("Lyon", 45.7640, 4.8357, "EUR"),
    ("Berlin", 52.5200, 13.4050, "EUR"),
    ("Madrid", 40.4168, -3.7038, "EUR"),
    ("Lisbon", 38.7223, -9.1393, "EUR"),
    ("London", 51.5074, -0.1278, "GBP"),
    ("New York", 40.7128, -74.0060, "USD"),
    ("Chicago", 41.8781, -87.6298, "USD"),
    ("Austin", 30.2672, -97.7431, "USD"),
    ("Toronto", 43.6532, -79.3832, "CAD"),
    ("Casablanca", 33.5731, -7.5898, "MAD"),
    ("Nairobi", -1.2921, 36.8219, "KES"),
];

/// Pickups farther than this from every center belong to no city (gold's default radius:
/// `ridelake_lakehouse::model::GoldMap`).
pub const MAX_CITY_RADIUS_KM: f64 = 60.0;

/// Great-circle distance in kilometres.
pub fn haversine_km(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = p2 - p1;
    let dl = (lon2 - lon1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    6371.0 * 2.0 * a.sqrt().asin()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn great_circle_distance() {
        assert!((haversine_km(48.8566, 2.3522, 51.5074, -0.1278) - 343.5).abs() < 2.0);
    }
}
